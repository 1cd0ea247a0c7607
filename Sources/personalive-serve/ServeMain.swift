// ServeMain.swift — the `personalive-serve` executable: `personalive serve` and `personalive bench
// serve` hand over to it (ServeHandOver.swift), so that the main CLI (training, animation, the demo)
// builds without Hummingbird, SwiftNIO and TLS. It can also be run directly.
import ArgumentParser
import CLISupport
import Foundation
import Torch

@main
struct PersonaLiveServe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "personalive-serve",
        abstract: "The PersonaLive server (`personalive serve`) and its benchmark (`personalive bench serve`).",
        subcommands: [ServeCommand.self, BenchGroup.self])

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

struct BenchGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Server benchmarks.", subcommands: [BenchServeCommand.self])
}
