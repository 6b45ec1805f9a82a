{
  "targets": [
    {
      "target_name": "torch_native",
      "sources": [
        "native/addon.cc",
        "native/allocator.cc",
        "native/sharding.cc",
        "native/tensor.cc",
        "native/dispatch.cc",
        "native/autograd.cc",
        "native/nn.cc",
        "native/optim.cc",
        "native/runtime.cc",
        "native/c10d.cc",
        "native/ddp.cc",
        "native/jit.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node scripts/find-libtorch.mjs includes)"
      ],
      "defines": [
        "NAPI_EXPERIMENTAL",
        "NODE_ADDON_API_CPP_EXCEPTIONS",
        "NODE_ADDON_API_CPP_EXCEPTIONS_ALL",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "<!@(node scripts/find-libtorch.mjs defines)"
      ],
      "cflags!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["<!@(node scripts/find-libtorch.mjs cflags)", "-O2"],
      "ldflags": [
        "<!@(node scripts/find-libtorch.mjs ldflags)",
        "-Wl,--version-script=<(module_root_dir)/native/exports.map"
      ],
      "libraries": ["<!@(node scripts/find-libtorch.mjs libs)"]
    }
  ]
}
