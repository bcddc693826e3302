# Build of the nodevirt N-API addon (plain C, node_api.h only): `npm run build:native`
# or `npx node-gyp rebuild --directory=native`; output in native/build/ (git-ignored).
{
  "targets": [
    {
      "target_name": "nodevirt_native",
      "sources": ["src/addon.c", "src/tap.c", "src/packet.c", "src/notify.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Wshadow", "-Wno-unused-parameter", "-fvisibility=hidden"]
    }
  ]
}
