// PersonaLive.swift — the `personalive` command: parses, validates, sets up logging, calls down.
@_exported import CLISupport
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

