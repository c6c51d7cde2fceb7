# Shared by the consumer projects: the test program, built as a user would,
# with the warnings a careful user turns on (the public header must be clean
# under them), and the expectations .ci/consumers.sh passes in.
set(CMIO_CONSUMER_MAIN "${CMAKE_CURRENT_LIST_DIR}/main.c")

function(cmio_consumer target)
  add_executable(${target} "${CMIO_CONSUMER_MAIN}")
  set_target_properties(${target} PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
  if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
  endif()
  if(CMIO_EXPECT_VERSION)
    target_compile_definitions(${target} PRIVATE "CMIO_EXPECT_VERSION=\"${CMIO_EXPECT_VERSION}\"")
  endif()
  if(CMIO_EXPECT_BACKEND)
    target_compile_definitions(${target} PRIVATE "CMIO_EXPECT_BACKEND=\"${CMIO_EXPECT_BACKEND}\"")
  endif()
  target_link_libraries(${target} PRIVATE cmio::cmio)
endfunction()
