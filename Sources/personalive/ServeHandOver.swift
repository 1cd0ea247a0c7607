// ServeHandOver.swift — `personalive serve …` and `personalive bench serve …`: replaced (exec) by the
// `personalive-serve` executable built next to this one, with the same arguments, so that the server's
// dependencies (Hummingbird, SwiftNIO, TLS) stay out of the main CLI and its build.
import ArgumentParser
import Foundation

enum ServeHandOver {
    /// `personalive-serve` in this executable's folder.
    static var executable: URL {
        let own = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        return own.resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("personalive-serve")
    }

    /// Replaces this process by `personalive-serve <arguments>`; returns only by throwing.
    static func exec(_ arguments: [String]) throws -> Never {
        let path = executable.path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw CLIError("\(path) not found: the server is its own executable; build it with `make build` "
                           + "(or `swift build --product personalive-serve` with the same --scratch-path)")
        }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        execv(path, argv)
        throw CLIError("could not start \(path): \(String(cString: strerror(errno)))")
    }
}

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "HTTP animation jobs, WebSocket streaming and a webcam page (GET /) over one model in memory.",
        discussion: "Runs the personalive-serve executable next to this one; `personalive serve --help` lists its options.")

    @Argument(parsing: .captureForPassthrough, help: "personalive-serve's serve options (--model, --host, --port, …).")
    var arguments: [String] = []

    func run() throws { try ServeHandOver.exec(["serve"] + arguments) }
}

struct BenchServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve on random weights: animation jobs per second, WebSocket frame latency with 1 and 4 clients.",
        discussion: "Runs the personalive-serve executable next to this one.")

    @Argument(parsing: .captureForPassthrough, help: "personalive-serve's bench serve options (--config, --jobs, …).")
    var arguments: [String] = []

    func run() throws { try ServeHandOver.exec(["bench", "serve"] + arguments) }
}
