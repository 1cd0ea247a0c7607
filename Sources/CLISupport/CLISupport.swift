// CLISupport.swift — what the command-line executables share (`personalive`, and `personalive-serve`,
// which holds the Hummingbird server so that the main CLI builds without it): the global options
// and logging set-up, the one-line CLI error, the model options of the inference commands, and the
// lookup of the bundled configs.
import ArgumentParser
import Foundation
import Inference
import Logging
import Torch

/// Options every command shares.
public struct GlobalOptions: ParsableArguments {
    public init() {}

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error.")
    public var logLevel: String = "info"

    @Option(name: .long, help: "Number of CPU threads LibTorch may use (default: LibTorch's choice).")
    public var threads: Int?

    /// Sets up logging to stderr and the thread count; returns the command's logger.
    public func setUp(label: String) throws -> Logger {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingBootstrap.once(level: level)
        if let threads { try Torch.setNumThreads(threads) }
        var logger = Logger(label: "personalive.\(label)")
        logger.logLevel = level
        return logger
    }
}

enum LoggingBootstrap {
    nonisolated(unsafe) private static var done = false
    static func once(level: Logger.Level) {
        guard !done else { return }
        done = true
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
    }
}

/// Errors the CLI reports as one clear line and a non-zero exit.
public struct CLIError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The model an inference command loads (animate, pose extract, live, serve) and where it runs.
public struct ModelOptions: ParsableArguments {
    public init() {}

    @Option(help: "A checkpoint run folder (its latest checkpoint), one checkpoint-N folder, or a model.yaml naming every module's weights.")
    public var model: String

    @Option(help: "cpu, cuda or cuda:N (default: cpu).") public var device: String = "cpu"
    @Option(help: "float32, float16 or bfloat16 (default: float32; float16 is the reference's choice on CUDA).")
    public var dtype: String = "float32"
    @Option(help: "Seed of the stream's noise.") public var seed: UInt64 = 42

    public func load(logger: Logger) throws -> PersonaLiveModel {
        let dev = try Device(parsing: device)
        if case .cuda = dev, !Torch.cudaIsAvailable { throw CLIError("--device \(device): this LibTorch has no CUDA") }
        let dt: DType
        switch dtype {
        case "float32", "fp32": dt = .float32
        case "float16", "fp16": dt = .float16
        case "bfloat16", "bf16": dt = .bfloat16
        default: throw ValidationError("--dtype must be float32, float16 or bfloat16 (got '\(dtype)')")
        }
        return try PersonaLiveModel.load(model, device: dev, dtype: dt, logger: logger)
    }
}

/// The package root this binary was built in (…/.build*/debug/personalive → …), where Configs/ lives.
public func packageRootForConfigs() -> String {
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    for _ in 0..<4 {
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
        url = url.deletingLastPathComponent()
    }
    return FileManager.default.currentDirectoryPath
}

/// tiny / sd15 (Configs/<name>/model.yaml, from the working folder or the package root) or a model.yaml path.
public func benchModelPath(_ config: String, root: String) throws -> String {
    if config == "tiny" || config == "sd15" {
        for r in [FileManager.default.currentDirectoryPath, root] {
            let p = (r as NSString).appendingPathComponent("Configs/\(config)/model.yaml")
            if FileManager.default.fileExists(atPath: p) { return p }
        }
        throw CLIError("Configs/\(config)/model.yaml not found (run from the package root or pass a path)")
    }
    guard FileManager.default.fileExists(atPath: config) else {
        throw CLIError("--config: '\(config)' is neither tiny, sd15 nor an existing model.yaml")
    }
    return config
}
