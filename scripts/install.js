#!/usr/bin/env node
'use strict';
// npm's `install` step for ipcwire (shipped in the tarball). Nothing to do when the addon the package would load at
// require time loads here: the prebuilt binary for this platform and C library, or a local build. Otherwise (no
// prebuilt binary for this platform, a checkout without dist/ yet, npm_config_build_from_source) node-gyp-build
// builds it from source. node-gyp-build alone would test the glibc binary on a musl system other than Alpine
// (it knows musl only by /etc/alpine-release), fail to load it, and start a source build that needs a compiler.
const fromSource = /^(true|ipcwire)$/.test(process.env.npm_config_build_from_source || '');
let loaded = false;
if (!fromSource) {
  try {
    require('../dist/cjs/native.js').native();
    loaded = true;
  } catch {
    /* build from source below */
  }
}
if (!loaded) require('node-gyp-build/bin.js');
