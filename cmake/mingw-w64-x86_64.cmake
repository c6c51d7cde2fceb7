# Cross-compiling for 64-bit Windows with MinGW-w64 (Debian/Ubuntu package
# mingw-w64):
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64-x86_64.cmake
# Tests then run under Wine when CMAKE_CROSSCOMPILING_EMULATOR is set to
# wine (see .ci/wine.sh). Only 64-bit: a 32-bit build does not run under a
# 64-bit-only Wine.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(CMIO_MINGW_PREFIX x86_64-w64-mingw32 CACHE STRING "MinGW-w64 tool prefix")
set(CMAKE_C_COMPILER ${CMIO_MINGW_PREFIX}-gcc)
set(CMAKE_CXX_COMPILER ${CMIO_MINGW_PREFIX}-g++)
set(CMAKE_RC_COMPILER ${CMIO_MINGW_PREFIX}-windres)

set(CMAKE_FIND_ROOT_PATH /usr/${CMIO_MINGW_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
