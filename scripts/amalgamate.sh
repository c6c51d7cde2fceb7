#!/usr/bin/env bash
# Produces the single-file distribution of cmio: cmio.h and cmio.c, to be
# dropped into a project and compiled like any of its own files (no CMake,
# no generated header, no other file):
#
#   scripts/amalgamate.sh OUTDIR             every backend in the tree; cmio.h
#                                            picks one by platform (see below)
#   scripts/amalgamate.sh OUTDIR epoll ...   only the backends named
#   scripts/amalgamate.sh --list             the backends in the tree
#
#   cc -std=c11 -c cmio.c                    plus -pthread on POSIX when linking,
#                                            ws2_32 and ntdll on Windows
#
# With several backends, cmio.h takes the native one for the platform it is
# compiled on (iocp on Windows, epoll on Linux, kqueue on macOS and the BSDs,
# poll elsewhere); defining CMIO_BACKEND_<NAME> (for example
# -DCMIO_BACKEND_POLL) for cmio.c and its users picks another.
#
# Everything is read from the tree, so new backends need no change here: the
# backends, their source files and whether they have native edges come from
# the CMIO_KNOWN_BACKENDS, CMIO_SOURCES_<name> and CMIO_NATIVE_EDGE_<name>
# lists in CMakeLists.txt, the version from its project() line, and the
# private headers from the sources' #include "..." lines, inlined where they
# are first needed. What it cannot read is which platform a backend is for:
# that is the platform_test table below.
#
# Putting every file in one translation unit has two consequences, both
# handled here: a macro a .c file defines is #undef'd after it, so it cannot
# leak into the next file; and two files may not define file-private
# (static) functions, variables or struct tags of the same name, which is
# checked per backend before anything is written.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmake_lists="$root/CMakeLists.txt"

die() {
  echo "amalgamate: $*" >&2
  exit 1
}

# The preprocessor test for "this backend is the native one here".
platform_test() {
  case $1 in
    iocp) echo 'defined(_WIN32)' ;;
    epoll) echo 'defined(__linux__)' ;;
    kqueue) echo 'defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__) || defined(__DragonFly__)' ;;
    poll) echo '!defined(_WIN32)' ;;
    *) die "no platform test for backend '$1': add one to platform_test in $0" ;;
  esac
}

# Prints the words of a set(NAME ...) in CMakeLists.txt, which may span lines.
cmake_list() {
  awk -v name="$1" '
    !found && $0 ~ "^[ \t]*set\\(" name "[ \t)]" {
      found = 1; buf = ""
    }
    found {
      line = $0; sub(/#.*/, "", line); buf = buf " " line
      if (line ~ /\)/) { sub(/\).*/, "", buf); sub(/^[ \t]*set\(/, "", buf); print buf; exit }
    }' "$cmake_lists" | awk '{ for (i = 2; i <= NF; i++) print $i }'
}

version=$(sed -n 's/^project(cmio VERSION \([0-9]*\.[0-9]*\.[0-9]*\).*/\1/p' "$cmake_lists")
[ -n "$version" ] || die "no 'project(cmio VERSION x.y.z' line in CMakeLists.txt"
IFS=. read -r v_major v_minor v_patch <<<"$version"

# The backends whose first source file exists, in CMakeLists.txt's order,
# which is also the order of preference on a platform that has several.
available=()
for b in $(cmake_list CMIO_KNOWN_BACKENDS); do
  first=$(cmake_list "CMIO_SOURCES_$b" | awk 'NR == 1')
  [ -n "$first" ] && [ -f "$root/$first" ] && available+=("$b")
done
[ ${#available[@]} -gt 0 ] || die "no backend sources found"

if [ "${1:-}" = "--list" ]; then
  printf '%s\n' "${available[@]}"
  exit 0
fi
[ $# -ge 1 ] || die "usage: $0 OUTDIR [BACKEND...] | --list"
outdir=$1
shift
if [ $# -gt 0 ]; then
  backends=()
  for b in "$@"; do
    [[ " ${available[*]} " == *" $b "* ]] || die "backend '$b' is not in this tree (have: ${available[*]})"
    backends+=("$b")
  done
else
  backends=("${available[@]}")
fi

upper() { tr '[:lower:]' '[:upper:]' <<<"$1"; }

# The source files of backend b, the core first, as cmio_add_library has them.
files_of() {
  echo src/core.c
  cmake_list "CMIO_SOURCES_$1"
}

# The #if condition that holds when any backend of the set is selected, or
# nothing when the set is every backend in this distribution.
condition() {
  local members b out=""
  read -ra members <<<"$1"
  [ ${#members[@]} -eq ${#backends[@]} ] && return 0
  for b in "${members[@]}"; do out+="${out:+ || }defined(CMIO_BACKEND_$(upper "$b"))"; done
  echo "$out"
}

# --- The one-translation-unit check ---------------------------------------

# File-private names a C file defines at file scope (column 0, as the
# project's style writes them): static functions and variables, struct tags.
private_names() {
  sed -n -e 's/^static [^=(;]*[ *]\([A-Za-z_][A-Za-z0-9_]*\) *(.*/\1/p' \
         -e 's/^static [^=(;]*[ *]\([A-Za-z_][A-Za-z0-9_]*\) *\(=\|;\|\[\).*/\1/p' \
         -e 's/^struct \([A-Za-z_][A-Za-z0-9_]*\) *{.*/struct \1/p' "$1" | sort -u
}

for b in "${backends[@]}"; do
  while read -r f; do
    [ -f "$root/$f" ] || die "$f (listed for backend $b) does not exist"
    private_names "$root/$f" | sed "s|\$|	$f|"
  done < <(files_of "$b" | awk '!seen[$0]++') |
    sort | awk -F '\t' -v b="$b" '
      $1 == last { printf "amalgamate: %s is defined file-private in both %s and %s (backend %s): rename one, since the single-file build compiles them together\n", $1, lastf, $2, b; bad = 1 }
      { last = $1; lastf = $2 }
      END { exit bad }' >&2 || exit 1
done

# --- Writing ---------------------------------------------------------------

mkdir -p "$outdir"
tmp_h=$(mktemp) tmp_c=$(mktemp)
trap 'rm -f "$tmp_h" "$tmp_c"' EXIT

banner() {
  cat <<EOF
/*
 * $1: the single-file distribution of cmio $version
 * (backends: ${backends[*]}), generated by scripts/amalgamate.sh from the
 * cmio sources. Do not edit: change the sources and generate it again.
 * $2
 *
EOF
  sed -e 's/^/ * /' -e 's/ *$//' "$root/LICENSE"
  echo " */"
}

# The content of <cmio/config.h> for this distribution (the CMake build
# generates it from cmake/config.h.in; the macros must be the same).
config_block() {
  local b
  echo "/* The backend and version (in the CMake build: the generated <cmio/config.h>). */"
  echo "#ifndef CMIO_CONFIG_H_"
  echo "#define CMIO_CONFIG_H_"
  for b in $(cmake_list CMIO_KNOWN_BACKENDS); do
    [[ " ${backends[*]} " == *" $b "* ]] && continue
    echo "#ifdef CMIO_BACKEND_$(upper "$b")"
    echo "#error \"cmio.h: this distribution has no $b backend\""
    echo "#endif"
  done
  if [ ${#backends[@]} -gt 1 ]; then
    local sum="" none=""
    for b in "${backends[@]}"; do
      sum+="${sum:+ + }defined(CMIO_BACKEND_$(upper "$b"))"
      none+="${none:+ && }!defined(CMIO_BACKEND_$(upper "$b"))"
    done
    echo "#if $sum > 1"
    echo "#error \"cmio.h: define at most one CMIO_BACKEND_<NAME>\""
    echo "#elif $none"
    local kw="#if"
    for b in "${backends[@]}"; do
      echo "$kw $(platform_test "$b")"
      echo "#define CMIO_BACKEND_$(upper "$b") 1"
      kw="#elif"
    done
    echo "#else"
    echo "#error \"cmio.h: this distribution has no backend for this platform\""
    echo "#endif"
    echo "#endif"
  else
    echo "#ifndef CMIO_BACKEND_$(upper "${backends[0]}")"
    echo "#define CMIO_BACKEND_$(upper "${backends[0]}") 1"
    echo "#endif"
  fi
  local kw="#if"
  for b in "${backends[@]}"; do
    echo "$kw defined(CMIO_BACKEND_$(upper "$b"))"
    echo "#define CMIO_BACKEND_NAME \"$b\""
    [ "$(cmake_list "CMIO_NATIVE_EDGE_$b")" = "ON" ] && echo "#define CMIO_NATIVE_EDGE 1"
    kw="#elif"
  done
  echo "#else"
  echo "#error \"cmio.h: CMIO_BACKEND_<NAME> names a backend this distribution does not have\""
  echo "#endif"
  echo "#define CMIO__VERSION_MAJOR $v_major"
  echo "#define CMIO__VERSION_MINOR $v_minor"
  echo "#define CMIO__VERSION_PATCH $v_patch"
  echo "#endif /* CMIO_CONFIG_H_ */"
}

{
  banner cmio.h "Include it as \"cmio.h\"; it is <cmio/poll.h> with its configuration."
  echo
  while IFS= read -r line; do
    if [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\<cmio/config\.h\> ]]; then
      config_block
    else
      printf '%s\n' "$line"
    fi
  done <"$root/include/cmio/poll.h"
} >"$tmp_h"

# Headers already inlined, one "path<TAB>backend set" per line: a header is
# inlined again only where no earlier copy is compiled for every backend the
# current block is compiled for.
inlined=""

already_inlined() { # header, backend set
  local h=$1 want entry have b ok
  read -ra want <<<"$2"
  while IFS=$'\t' read -r entry have; do
    [ "$entry" = "$h" ] || continue
    ok=1
    for b in "${want[@]}"; do [[ " $have " == *" $b "* ]] || ok=0; done
    [ $ok -eq 1 ] && return 0
  done <<<"$inlined"
  return 1
}

# Copies a source or private header, inlining the private headers it
# includes and dropping includes of the public header (cmio.c starts with
# cmio.h), for the backends in the set given.
emit() { # path relative to root, backend set
  local path=$1 users=$2 dir line inc
  dir=$(dirname "$path")
  echo "/* ---- $path ---- */"
  while IFS= read -r line; do
    if [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]]; then
      inc="$dir/${BASH_REMATCH[1]}"
      [ -f "$root/$inc" ] || die "$path includes \"${BASH_REMATCH[1]}\", which is not in $dir/"
      if ! already_inlined "$inc" "$users"; then
        inlined+="$inc"$'\t'"$users"$'\n'
        emit "$inc" "$users"
        echo "/* ---- back in $path ---- */"
      fi
    elif [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\<cmio/ ]]; then
      :
    else
      printf '%s\n' "$line"
    fi
  done <"$root/$path"
}

# The macros a .c file defines itself (not those of the headers it includes),
# except fallbacks for system macros (#ifndef X / #define X): those may be the
# system's own, which later files may use.
own_macros() {
  awk '
    { sub(/^[ \t]*#[ \t]*/, "#") }
    /^#ifndef[ \t]/ { fallback[$2] = 1 }
    /^#define[ \t]/ { name = $2; sub(/\(.*/, "", name); defined[name] = 1 }
    END { for (n in defined) if (!(n in fallback)) print n }' "$1" | sort
}

{
  banner cmio.c "Compile it with cmio.h beside it."
  echo
  echo "/* As the CMake build does: the POSIX and GNU declarations the backends use"
  echo " * (clock_gettime, syscall, ...) are hidden by a strict -std=c11. */"
  echo "#ifndef _GNU_SOURCE"
  echo "#define _GNU_SOURCE"
  echo "#endif"
  echo "#ifndef CMIO_BUILDING"
  echo "#define CMIO_BUILDING"
  echo "#endif"
  echo "#include \"cmio.h\""
  # Every file once, each compiled for the backends that use it: first those
  # every backend uses (the core first), then the others in the order the
  # backends list them.
  all_files=$(for b in "${backends[@]}"; do files_of "$b"; done | awk '!seen[$0]++')
  ordered=()
  for pass in shared own; do
    for f in $all_files; do
      users=""
      for b in "${backends[@]}"; do
        [[ $'\n'"$(files_of "$b")"$'\n' == *$'\n'"$f"$'\n'* ]] && users+="${users:+ }$b"
      done
      cond=$(condition "$users")
      if { [ $pass = shared ] && [ -z "$cond" ]; } || { [ $pass = own ] && [ -n "$cond" ]; }; then
        ordered+=("$f:$users")
      fi
    done
  done
  for entry in "${ordered[@]}"; do
    f=${entry%%:*}
    users=${entry#*:}
    cond=$(condition "$users")
    echo
    [ -n "$cond" ] && echo "#if $cond"
    emit "$f" "$users"
    for m in $(own_macros "$root/$f"); do echo "#undef $m"; done
    [ -n "$cond" ] && echo "#endif /* $f */"
  done
} >"$tmp_c"

cp "$tmp_h" "$outdir/cmio.h"
cp "$tmp_c" "$outdir/cmio.c"
echo "amalgamate: $outdir/cmio.h and $outdir/cmio.c (cmio $version; backends: ${backends[*]})"
