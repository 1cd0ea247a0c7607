// PersonaLive.swift — the `personalive` command: parses, validates, sets up logging, calls down.
import ArgumentParser
import Foundation
import Logging
import Torch

@main
struct PersonaLive: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "personalive",
        abstract: "Train, distill and run PersonaLive portrait animation on LibTorch.",
        version: versionString(),
        subcommands: [FixturesCommand.self, CheckpointCommand.self, DatasetCommand.self, ConfigCommand.self, TrainCommand.self,
                      ReportCommand.self, AnimateCommand.self, PoseCommand.self, LiveCommand.self, ServeCommand.self, EvaluateCommand.self, BenchCommand.self]
    )

    static func versionString() -> String {
        let cuda = Torch.cudaIsAvailable ? "yes (\(Torch.cudaDeviceCount) device(s))" : "no"
        return """
            personalive \(personaliveVersion)
            LibTorch \(Torch.runtimeVersion.isEmpty ? "unknown" : Torch.runtimeVersion) (headers \(Torch.headerVersion))
            CUDA available: \(cuda)
            """
    }

    static func main() {
        do {
            try Torch.checkVersion()
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            Foundation.exit(3)
        }
        main(nil)
    }
}

let personaliveVersion = "0.1.0"

/// Options every command shares.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    @Option(name: .long, help: "Number of CPU threads LibTorch may use (default: LibTorch's choice).")
    var threads: Int?

    /// Sets up logging to stderr and the thread count; returns the command's logger.
    func setUp(label: String) throws -> Logger {
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
struct CLIError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
