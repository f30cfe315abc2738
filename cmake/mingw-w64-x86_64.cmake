# Cross-compiling the win32-x64 addon on Linux with mingw-w64 (posix threads: the win32-threads variant has no
# std::mutex/std::thread). node-gyp cannot cross-compile; cmake can:
#
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64-x86_64.cmake && cmake --build build-win -j2
#
# The addon links against node.exe's exports through import libraries made by dlltool (CMakeLists.txt, MINGW
# branch), statically against libstdc++/libgcc/winpthread, so it imports only NODE.EXE and system DLLs.
# scripts/windows-ci.sh builds the shipped binary with the same flags and runs it under wine.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(_mingw x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${_mingw}-gcc-posix)
set(CMAKE_CXX_COMPILER ${_mingw}-g++-posix)
set(CMAKE_RC_COMPILER ${_mingw}-windres)
set(CMAKE_DLLTOOL ${_mingw}-dlltool)
set(CMAKE_FIND_ROOT_PATH /usr/${_mingw})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
# BOTH: the host Node's include/node (uv.h, uv/win.h) is found as well as mingw's own headers.
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
