{
  # The install-time build (node-gyp / prebuildify). CMakeLists.txt builds the same addon with cmake-js,
  # plus the native tests and benchmarks. Keep the two in step: same sources, same defines, C++ exceptions on.
  "targets": [
    {
      "target_name": "ipcwire",
      "sources": [
        "src/native/addon.cc",
        "src/native/errors.cc",
        "src/native/frame_decoder.cc",
        "src/native/shm_pool.cc",
        "src/native/shm_napi.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"
      ],
      "cflags!": ["-fno-exceptions", "-O3"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20", "-O3"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        ["OS!='win'", {
          "sources": [
            "src/native/unix/sys.cc",
            "src/native/unix/connection.cc",
            "src/native/unix/server.cc",
            "src/native/unix/transport.cc"
          ]
        }],
        ["OS=='mac'", {
          "xcode_settings": {
            "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "CLANG_CXX_LIBRARY": "libc++",
            "MACOSX_DEPLOYMENT_TARGET": "10.15",
            "GCC_OPTIMIZATION_LEVEL": "2",
            "WARNING_CFLAGS": ["-Wall", "-Wextra", "-Wno-unused-parameter"]
          }
        }],
        ["OS=='win'", {
          "sources": [
            "src/native/win/win_errors.cc",
            "src/native/win/pipe_connection.cc",
            "src/native/win/pipe_server.cc",
            "src/native/win/transport.cc"
          ],
          "libraries": ["-ladvapi32.lib"],
          "defines": ["_HAS_EXCEPTIONS=1", "WIN32_LEAN_AND_MEAN", "NOMINMAX", "UNICODE", "_UNICODE"],
          "msvs_settings": {
            "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17"] }
          }
        }]
      ]
    }
  ]
}
