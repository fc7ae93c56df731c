#!/usr/bin/env bash
# Builds bindings/swift/FreshTokenFFI.xcframework: the freshtoken Rust core
# as a static library for iOS devices, the iOS simulator (arm64 + x86_64)
# and macOS (arm64 + x86_64), with the committed C header and module map.
#
#   bash bindings/swift/scripts/build-xcframework.sh
#
# MACOS WITH XCODE ONLY (xcodebuild, lipo, the Apple SDKs), plus rustup.
# This script was written on Linux, where it cannot run: it has been checked
# for shell syntax (bash -n) and by scripts/check-swift-bindings.sh, never
# executed. Read it before you trust it.
#
# Notes
# - Cargo.toml declares crate-type ["cdylib", "rlib"] (no "staticlib"), so
#   each slice is built with `cargo rustc --crate-type staticlib`: the same
#   build as `cargo build --release --features ffi --lib --target <t>`, with
#   the crate type overridden on the command line (Rust 1.64+).
# - The release profile is the project's: lto, opt-level "z",
#   panic = "abort" (a Rust panic then ends the app instead of surfacing as
#   an error). To let uniffi turn panics into errors, build with
#   CARGO_PROFILE_RELEASE_PANIC=unwind in the environment.
# - The header and module map come from bindings/swift/Sources/FreshTokenFFI/
#   include/, i.e. the committed copies; on Linux,
#   scripts/check-swift-bindings.sh proves they match the Rust export. The
#   generated Swift also checks uniffi's API checksums when it first loads
#   the library and stops with "UniFFI API checksum mismatch" if they differ.
# - Deployment targets follow Package.swift: iOS 15, macOS 12.
set -euo pipefail

swift_dir="$(cd "$(dirname "$0")/.." && pwd)"     # bindings/swift
repo="$(cd "$swift_dir/../.." && pwd)"            # the Rust crate
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
headers_src="$swift_dir/Sources/FreshTokenFFI/include"
out="$swift_dir/FreshTokenFFI.xcframework"
work="$swift_dir/build/xcframework"
lib=libfreshtoken.a

targets=(
  aarch64-apple-ios       # devices
  aarch64-apple-ios-sim   # simulator on Apple silicon
  x86_64-apple-ios        # simulator on Intel
  aarch64-apple-darwin    # macOS, Apple silicon
  x86_64-apple-darwin     # macOS, Intel
)

fail() { echo "[build-xcframework] $*" >&2; exit 1; }

[ "$(uname -s)" = Darwin ] || fail "needs macOS with Xcode (this is $(uname -s))"
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi
for tool in cargo rustup xcodebuild lipo; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool not found"
done
for file in FreshTokenFFI.h module.modulemap; do
  [ -f "$headers_src/$file" ] || fail "missing $headers_src/$file"
done

export IPHONEOS_DEPLOYMENT_TARGET="${IPHONEOS_DEPLOYMENT_TARGET:-15.0}"
export MACOSX_DEPLOYMENT_TARGET="${MACOSX_DEPLOYMENT_TARGET:-12.0}"

installed="$(rustup target list --installed)"
for t in "${targets[@]}"; do
  if ! grep -qx "$t" <<<"$installed"; then
    echo "[build-xcframework] rustup target add $t"
    rustup target add "$t"
  fi
done

for t in "${targets[@]}"; do
  echo "[build-xcframework] cargo: $t"
  (cd "$repo" && cargo rustc --quiet --release --features ffi --lib --target "$t" --crate-type staticlib)
  [ -f "$target_dir/$t/release/$lib" ] || fail "cargo did not produce $target_dir/$t/release/$lib"
done

rm -rf "$work"
mkdir -p "$work/ios" "$work/ios-simulator" "$work/macos" "$work/headers"

cp "$target_dir/aarch64-apple-ios/release/$lib" "$work/ios/$lib"
lipo -create \
  "$target_dir/aarch64-apple-ios-sim/release/$lib" \
  "$target_dir/x86_64-apple-ios/release/$lib" \
  -output "$work/ios-simulator/$lib"
lipo -create \
  "$target_dir/aarch64-apple-darwin/release/$lib" \
  "$target_dir/x86_64-apple-darwin/release/$lib" \
  -output "$work/macos/$lib"

# Headers/ of every slice: FreshTokenFFI.h and module.modulemap, flat (the
# layout uniffi documents; see README.md about two such XCFrameworks in one app).
cp "$headers_src/FreshTokenFFI.h" "$headers_src/module.modulemap" "$work/headers/"

rm -rf "$out"
xcodebuild -create-xcframework \
  -library "$work/ios/$lib" -headers "$work/headers" \
  -library "$work/ios-simulator/$lib" -headers "$work/headers" \
  -library "$work/macos/$lib" -headers "$work/headers" \
  -output "$out"

for slice in ios "ios-simulator" macos; do
  echo "[build-xcframework] $slice: $(lipo -archs "$work/$slice/$lib")"
done
echo "[build-xcframework] $out"
echo "[build-xcframework] next: cd $swift_dir && swift build"
