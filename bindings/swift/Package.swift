// swift-tools-version:5.9
//
// FreshToken: the Swift binding of the freshtoken Rust core (uniffi 0.32).
//
// Layout (one, on purpose):
//   FreshTokenFFI.xcframework   the Rust static library for iOS, the iOS
//                               simulator and macOS, with the C header and
//                               module map; built on a Mac by
//                               scripts/build-xcframework.sh, not committed.
//   Sources/FreshToken/         the Swift module: FreshToken.swift (generated
//                               by uniffi, committed) and the hand-written
//                               URLSession client, Keychain store and helpers.
//   Sources/FreshTokenFFI/      not a SwiftPM target: the committed C header
//                               and module map that build-xcframework.sh
//                               packs into the XCFramework's Headers/.
import PackageDescription

let package = Package(
    name: "FreshToken",
    platforms: [
        .iOS(.v15),
        .macOS(.v12),
    ],
    products: [
        .library(name: "FreshToken", targets: ["FreshToken"]),
    ],
    targets: [
        .binaryTarget(
            name: "FreshTokenFFI",
            path: "FreshTokenFFI.xcframework"
        ),
        .target(
            name: "FreshToken",
            dependencies: ["FreshTokenFFI"],
            path: "Sources/FreshToken",
            linkerSettings: [
                // KeychainTokenStore (SecItem*).
                .linkedFramework("Security"),
                // What the Rust static library needs besides libSystem, per
                // `rustc --print native-static-libs` for aarch64-apple-ios:
                // -liconv -lSystem -lc -lm.
                .linkedLibrary("iconv"),
            ]
        ),
    ]
)
