// ServeCommand.swift — `personalive serve` (run as `personalive-serve serve`; `personalive serve`
// hands over to it): the Serve target's HTTP + WebSocket server over one model in memory.
import ArgumentParser
import CLISupport
import Foundation
import Inference
import Logging
import Media
import Serve

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "HTTP animation jobs, WebSocket streaming and a webcam page (GET /) over one model in memory.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port, printed).") var port: Int = 8080
    @Option(help: "Largest upload of POST /v1/animations, in MiB.") var maxUpload: Double = 64
    @Option(help: "Animation jobs running at once (they share the model chunk by chunk).") var concurrency: Int = 1
    @Option(help: "WebSocket streams open at once; one more is refused.") var maxStreams: Int = 4
    @Option(help: "Most driving frames one job animates (default: all).") var maxFrames: Int?
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535") }
        guard maxUpload > 0 else { throw ValidationError("--max-upload must be positive") }
        guard concurrency >= 1 else { throw ValidationError("--concurrency must be at least 1") }
        guard maxStreams >= 0 else { throw ValidationError("--max-streams must not be negative") }
        if let maxFrames, maxFrames <= 0 { throw ValidationError("--max-frames must be positive") }
    }

    func run() throws {
        let logger = try global.setUp(label: "serve")
        let model = try modelOptions.load(logger: logger)
        var options = ServeOptions()
        options.host = host
        options.port = port
        options.maxUploadBytes = Int(maxUpload * 1_048_576)
        options.concurrency = concurrency
        options.maxStreams = maxStreams
        options.maxFrames = maxFrames
        options.seed = modelOptions.seed
        let server = try PersonaLiveServer(model: model, options: options, logger: logger)
        let host = self.host
        // The root command is synchronous: the server runs on Swift's concurrency pool while this
        // thread waits for it (SIGINT / SIGTERM stop it gracefully).
        let outcome = ServeOutcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                try await server.run { port in
                    print("serving on http://\(host):\(port)/ (the webcam page), API description at /openapi.json")
                    fflush(stdout)
                }
            } catch {
                outcome.error = error
            }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw error }
    }
}

final class ServeOutcome: @unchecked Sendable {
    var error: Error?
}
