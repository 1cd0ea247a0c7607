// BenchServe.swift — `personalive bench serve`: the server of `personalive serve` in this process on
// a random tiny model (or another model.yaml), measured through real clients on loopback:
// animation jobs per second (small jobs: an 8-frame driving clip, submitted together and polled to
// completion with AsyncHTTPClient) and WebSocket frame latency with 1 and 4 concurrent clients
// (each streams chunks of JPEG frames; latency is what the server reports per frame, input in →
// output out, and the client's round trip per chunk). Prints, never asserts.
import AsyncHTTPClient
import ArgumentParser
import CLISupport
import Foundation
import HummingbirdWSClient
import Inference
import Logging
import Media
import NIOCore
import Serve
import Torch

struct BenchServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve on random weights: animation jobs per second, WebSocket frame latency with 1 and 4 clients.")

    @Option(help: "tiny, sd15 (Configs/<name>/model.yaml) or a model.yaml path.") var config: String = "tiny"
    @Option(help: "Animation jobs to submit.") var jobs: Int = 8
    @Option(help: "Jobs running at once on the server.") var concurrency: Int = 2
    @Option(help: "Driving frames each WebSocket client streams.") var frames: Int = 64
    @OptionGroup var global: GlobalOptions

    func run() throws {
        let logger = try global.setUp(label: "bench")
        let path = try benchModelPath(config, root: packageRootForConfigs())
        let model = try PersonaLiveModel.random(modelYAML: path)
        let s = model.settings.image_size
        print("LibTorch \(Torch.runtimeVersion), \(Torch.numThreads) threads; config \(path), frames \(s)²")
        var options = ServeOptions()
        options.port = 0
        options.concurrency = concurrency
        options.maxStreams = 4
        // Hummingbird reports its own cancellation at shutdown as errors; the bench shows only its figures.
        var quiet = logger
        quiet.logLevel = .critical
        let server = try PersonaLiveServer(model: model, options: options, logger: quiet)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("bench-serve-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }

        // Inputs: a portrait-sized reference and an 8-frame driving clip of moving colour.
        func frame(_ i: Int) throws -> RGBImage {
            var img = RGBImage(width: s, height: s, fill: (UInt8(40 + 20 * (i % 8)), 90, 140))
            for y in (s / 4)..<(s * 3 / 4) { for x in (s / 4 + i % 6)..<(s * 3 / 4) { let o = (y * s + x) * 3; img.pixels[o] = 220 } }
            return img
        }
        let referencePNG = try ImageIO.encode(frame(0), format: .png)
        let clip = scratch.appendingPathComponent("clip.mp4").path
        let writer = try VideoWriter(path: clip, width: s, height: s, options: .init(fps: 25), logger: quiet)
        for i in 0..<8 { try writer.write(frame(i)) }
        try writer.finish()
        let clipBytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: clip)))
        let jpegs = try (0..<8).map { try ImageIO.encode(frame($0), format: .jpeg, quality: 85) }

        let (jobs, frames) = (self.jobs, self.frames)
        let outcome = ServeOutcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    let port = AsyncStream<Int>.makeStream()
                    group.addTask { try await server.run { port.continuation.yield($0); port.continuation.finish() } }
                    var it = port.stream.makeAsyncIterator()
                    guard let p = await it.next() else { throw CLIError("the server did not start") }
                    try await Self.benchJobs(port: p, jobs: jobs, reference: referencePNG, clip: clipBytes)
                    for clients in [1, 4] {
                        try await Self.benchStreams(port: p, clients: clients, frames: frames, reference: referencePNG, jpegs: jpegs,
                                                    logger: quiet)
                    }
                    group.cancelAll()
                }
            } catch is CancellationError {
            } catch {
                outcome.error = error
            }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw error }
    }

    static func multipart(_ fields: [(String, String, [UInt8])], boundary: String) -> [UInt8] {
        var body: [UInt8] = []
        for (name, file, bytes) in fields {
            body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"; filename=\"\(file)\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8)
            body += bytes + Array("\r\n".utf8)
        }
        return body + Array("--\(boundary)--\r\n".utf8)
    }

    static func benchJobs(port: Int, jobs: Int, reference: [UInt8], clip: [UInt8]) async throws {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { _ = client.shutdown() }
        let boundary = "bench-\(UUID().uuidString)"
        let body = multipart([("reference", "ref.png", reference), ("driving", "clip.mp4", clip)], boundary: boundary)
        let start = Date()
        var ids: [String] = []
        for _ in 0..<jobs {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/animations")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "multipart/form-data; boundary=\(boundary)")
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await client.execute(request, timeout: .seconds(60))
            let data = try await response.body.collect(upTo: 1 << 20)
            guard response.status == .accepted,
                  let id = (try JSONSerialization.jsonObject(with: Data(buffer: data)) as? [String: Any])?["id"] as? String else {
                throw CLIError("POST /v1/animations answered \(response.status): \(String(buffer: data))")
            }
            ids.append(id)
        }
        var latencies: [Double] = []
        for id in ids {
            while true {
                let response = try await client.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/animations/\(id)"), timeout: .seconds(60))
                let data = try await response.body.collect(upTo: 1 << 20)
                let state = try JSONSerialization.jsonObject(with: Data(buffer: data)) as? [String: Any]
                let status = state?["status"] as? String
                if status == "failed" { throw CLIError("job \(id) failed: \(state?["error"] ?? "?")") }
                if status == "done" { latencies.append(Date().timeIntervalSince(start)); break }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        let wall = Date().timeIntervalSince(start)
        print(String(format: "animation jobs: %d jobs of 8 frames in %.2f s: %.2f jobs/s (%.1f frames/s); time to done median %.2f s",
                     jobs, wall, Double(jobs) / wall, Double(8 * jobs) / wall, LiveSummary.quantile(latencies, 0.5)))
    }

    static func benchStreams(port: Int, clients: Int, frames: Int, reference: [UInt8], jpegs: [[UInt8]],
                             logger: Logger) async throws {
        let start = Date()
        let results = try await withThrowingTaskGroup(of: ([Double], [Double], Int).self) { group in
            for _ in 0..<clients {
                group.addTask {
                    let box = StreamResult()
                    try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/v1/stream",
                                                      configuration: .init(maxFrameSize: 16 << 20), logger: logger) { inbound, outbound, _ in
                        var messages = inbound.messages(maxSize: 16 << 20).makeAsyncIterator()
                        try await outbound.write(.binary(ByteBuffer(bytes: reference)))
                        guard case .text(let ready)? = try await messages.next(), ready.contains("\"ready\"") else {
                            throw CLIError("the server did not answer the reference with ready")
                        }
                        var sent = 0
                        while sent < frames {
                            let t0 = Date()
                            for _ in 0..<4 { try await outbound.write(.binary(ByteBuffer(bytes: jpegs[sent % jpegs.count]))); sent += 1 }
                            while let message = try await messages.next() {
                                if case .binary = message { box.framesOut += 1; continue }
                                guard case .text(let text) = message else { continue }
                                if text.contains("\"error\"") { throw CLIError("stream: \(text)") }
                                let stats = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
                                box.server += (stats?["latency_ms"] as? [Double]) ?? []
                                box.roundTrips.append(Date().timeIntervalSince(t0) * 1000)
                                break
                            }
                        }
                        try await outbound.close(.normalClosure, reason: nil)
                    }
                    return (box.server, box.roundTrips, box.framesOut)
                }
            }
            var all: [([Double], [Double], Int)] = []
            for try await r in group { all.append(r) }
            return all
        }
        let wall = Date().timeIntervalSince(start)
        let server = results.flatMap(\.0), trips = results.flatMap(\.1), out = results.map(\.2).reduce(0, +)
        print(String(format: "WebSocket, %d client%@: frame latency (in → out, server) median %.0f ms, p95 %.0f ms; chunk round trip median %.0f ms; %.1f frames/s in all",
                     clients, clients == 1 ? "" : "s", LiveSummary.quantile(server, 0.5), LiveSummary.quantile(server, 0.95),
                     LiveSummary.quantile(trips, 0.5), Double(out) / wall))
    }
}

final class StreamResult: @unchecked Sendable {
    var server: [Double] = []
    var roundTrips: [Double] = []
    var framesOut = 0
}
