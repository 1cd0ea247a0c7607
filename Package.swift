// swift-tools-version:5.10
// PersonaLive-Swift. LibTorch is found at $LIBTORCH (a root holding include/ and lib/, e.g. a
// PyTorch wheel's torch/ folder or a CUDA libtorch); unset means Debian's libtorch-dev.
// TORCH_CUDA=1 force-links the CUDA libraries (the linker would otherwise drop them).
import PackageDescription
import Foundation

let env = ProcessInfo.processInfo.environment
let libtorchRoot = env["LIBTORCH"].flatMap { $0.isEmpty ? nil : $0 }
let torchCUDA = env["TORCH_CUDA"] == "1"

var torchCXX: [CXXSetting] = []
var torchLinker: [LinkerSetting] = []
if let root = libtorchRoot {
    torchCXX = [.unsafeFlags(["-I\(root)/include", "-I\(root)/include/torch/csrc/api/include"])]
    torchLinker = [.unsafeFlags(["-L\(root)/lib", "-Xlinker", "-rpath", "-Xlinker", "\(root)/lib"])]
} else {
    torchCXX = [.unsafeFlags(["-I/usr/include/torch/csrc/api/include"])]
}
if torchCUDA {
    torchLinker.append(.unsafeFlags(["-Xlinker", "--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-Xlinker", "--as-needed"]))
}
torchLinker += [.linkedLibrary("torch"), .linkedLibrary("torch_cpu"), .linkedLibrary("c10")]
// c10d's ProcessGroupGloo is compiled into libtorch_cpu (Debian's and the wheels'), but its header
// needs gloo's headers, which no LibTorch ships: Debian's libgloo-dev provides them (GLOO_INCLUDE
// overrides the folder). Without them the shim still builds and multi-process training reports
// that Gloo is missing. No -lgloo: the wheel's libtorch_cpu exports its own gloo (a second copy
// would interpose), Debian's links libgloo.so.0 itself. NCCL comes with a CUDA LibTorch.
let glooInclude = env["GLOO_INCLUDE"].flatMap { $0.isEmpty ? nil : $0 } ?? "/usr/include"
let hasGloo = env["CTORCH_NO_GLOO"] != "1" && FileManager.default.fileExists(atPath: "\(glooInclude)/gloo/config.h")
var distCXX: [CXXSetting] = []
if hasGloo {
    distCXX.append(.define("USE_C10D_GLOO"))
    if glooInclude != "/usr/include" { distCXX.append(.unsafeFlags(["-I\(glooInclude)"])) }
}
if torchCUDA { distCXX.append(.define("USE_C10D_NCCL")) }

let package = Package(
    name: "PersonaLive",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "personalive", targets: ["personalive"]),
        // The server (`personalive serve` hands over to it): Hummingbird stays out of the main CLI.
        .executable(name: "personalive-serve", targets: ["personalive-serve"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        // `serve` (Sources/Serve only) and its tests.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/vapor/multipart-kit", from: "4.7.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        .target(
            name: "CTorch",
            cxxSettings: torchCXX + distCXX + [.unsafeFlags(["-Wno-deprecated-declarations", "-O2"])],
            linkerSettings: torchLinker
        ),
        .target(name: "Torch", dependencies: ["CTorch"]),
        .target(name: "NN", dependencies: ["Torch"]),
        .target(name: "Models", dependencies: ["NN", "Torch"]),
        .target(name: "FixtureKit", dependencies: ["Inference", "Models", "NN", "Torch", .product(name: "Logging", package: "swift-log")]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        .target(
            name: "CFFmpeg",
            cSettings: [.unsafeFlags(["-I/usr/include/x86_64-linux-gnu"])],
            linkerSettings: [.linkedLibrary("avdevice"), .linkedLibrary("avformat"), .linkedLibrary("avcodec"), .linkedLibrary("swscale"), .linkedLibrary("avutil")]
        ),
        // Pixel loops (decode conversion, resizing, synthetic rendering, sampling) are optimised even in
        // debug builds: unoptimised Swift is ~30× slower there and would dominate tests and tiny runs.
        .target(name: "Media", dependencies: ["CFFmpeg", "Torch", .product(name: "Logging", package: "swift-log")],
                swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        .target(name: "Data", dependencies: ["CHDF5", "Media", "Torch", .product(name: "Logging", package: "swift-log")],
                swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        // Layer 8 of DESIGN §2, below Training and the CLI: the model bundle, the front-ends, the
        // streaming engine and offline animation; config decoding lives here too, so that reading
        // a model.yaml does not need the training target.
        .target(
            name: "Inference",
            dependencies: [
                "Torch", "NN", "Models", "Media",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .target(
            name: "Training",
            dependencies: [
                "Torch", "NN", "Models", "Media", "Data", "Inference",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // Layer 9: metrics, reports and plots over what Inference generates.
        .target(
            name: "Evaluation",
            dependencies: [
                "Torch", "NN", "Models", "Media", "Data", "Inference",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // `personalive serve`: HTTP jobs and WebSocket streams over Inference; the only target that
        // depends on Hummingbird.
        .target(
            name: "Serve",
            dependencies: [
                "Torch", "Media", "Inference",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "MultipartKit", package: "multipart-kit"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // What both executables share: global options, logging, model options.
        .target(
            name: "CLISupport",
            dependencies: [
                "Torch", "Inference",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "personalive",
            dependencies: [
                "Torch", "NN", "Models", "FixtureKit", "Media", "Data", "Inference", "Training", "Evaluation", "CLISupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            // The PyTorch peer of `bench compare` (Python, read from the package root at run time).
            exclude: ["Peer"]
        ),
        .executableTarget(
            name: "personalive-serve",
            dependencies: [
                "Torch", "Media", "Inference", "Serve", "CLISupport",
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "TorchTests", dependencies: ["Torch"], exclude: ["Resources"]),
        .testTarget(name: "NNTests", dependencies: ["NN", "Torch"]),
        .testTarget(name: "FixtureTests", dependencies: ["FixtureKit", "Models", "NN", "Torch"]),
        .testTarget(name: "MediaDataTests", dependencies: ["Media", "Data", "Torch"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Models", "NN", "Torch", "Data", "Media"]),
        .testTarget(name: "InferenceTests", dependencies: ["Inference", "Training", "Models", "NN", "Torch", "Data", "Media"]),
        .testTarget(name: "ServeTests", dependencies: [
            "Serve", "Inference", "Media", "Torch",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Inference", "Models", "NN", "Torch", "Data", "Media"]),
    ],
    cxxLanguageStandard: .cxx17
)
