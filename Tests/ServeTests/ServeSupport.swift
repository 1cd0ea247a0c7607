// ServeSupport.swift — what the serve tests share: a random tiny model, a server on a free port
// run for the length of a test body, multipart bodies, a real HTTP client and WebSocket client,
// and synthetic media (a reference portrait, a driving clip).
import AsyncHTTPClient
import Foundation
import HummingbirdWSClient
import Inference
import Logging
import Media
import NIOCore
import Serve
import Testing
import Torch

enum ServePaths {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static var tinyYAML: String { packageRoot.appendingPathComponent("Configs/tiny/model.yaml").path }

    static func scratch() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pl-serve-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// The personalive executable next to the test bundle (make test builds it first).
    static var binary: URL? {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent("personalive")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }

    /// The first executable of that name on PATH.
    static func tool(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }
}

let testLogger: Logger = {
    var l = Logger(label: "serve-tests")
    l.logLevel = .warning
    return l
}()

func tinyModel() throws -> PersonaLiveModel {
    return try PersonaLiveModel.random(modelYAML: ServePaths.tinyYAML)
}

/// A synthetic portrait-like frame: a face-coloured ellipse on a background, moving with `i`.
func syntheticFrame(_ i: Int, width: Int = 64, height: Int = 64) -> RGBImage {
    var img = RGBImage(width: width, height: height, fill: (30, 60, 110))
    let cx = Double(width) / 2 + Double(i % 6) - 3, cy = Double(height) / 2
    for y in 0..<height {
        for x in 0..<width {
            let dx = (Double(x) - cx) / (Double(width) * 0.28), dy = (Double(y) - cy) / (Double(height) * 0.36)
            if dx * dx + dy * dy < 1 {
                let o = (y * width + x) * 3
                img.pixels[o] = 225; img.pixels[o + 1] = UInt8(170 + i % 20); img.pixels[o + 2] = 140
            }
        }
    }
    return img
}

func writeClip(_ path: String, frames: Int, fps: Double = 25, size: Int = 64) throws {
    let w = try VideoWriter(path: path, width: size, height: size, options: .init(fps: fps), logger: testLogger)
    for i in 0..<frames { try w.write(syntheticFrame(i, width: size, height: size)) }
    try w.finish()
}

/// Runs a server on a free loopback port for the length of `body`, then stops it.
func withServer(_ options: ServeOptions = ServeOptions(), model: PersonaLiveModel? = nil,
                _ body: @escaping @Sendable (Int, PersonaLiveServer) async throws -> Void) async throws {
    var options = options
    options.port = 0
    options.host = "127.0.0.1"
    let server = try PersonaLiveServer(model: model ?? tinyModel(), options: options, logger: testLogger)
    try await withThrowingTaskGroup(of: Void.self) { group in
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        group.addTask { try await server.run { continuation.yield($0); continuation.finish() } }
        var it = ports.makeAsyncIterator()
        let port = try #require(await it.next(), "the server did not start")
        defer { group.cancelAll() }
        try await body(port, server)
    }
}

struct HTTPResult {
    let status: Int
    let body: [UInt8]
    var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]) ?? [:] }
    var text: String { String(decoding: body, as: UTF8.self) }
}

func multipart(_ fields: [(String, String, [UInt8])], boundary: String) -> [UInt8] {
    var body: [UInt8] = []
    for (name, file, bytes) in fields {
        body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"; filename=\"\(file)\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8)
        body += bytes + Array("\r\n".utf8)
    }
    return body + Array("--\(boundary)--\r\n".utf8)
}

func http(_ method: String, _ url: String, multipartFields: [(String, String, [UInt8])]? = nil) async throws -> HTTPResult {
    let client = HTTPClient(eventLoopGroupProvider: .singleton)
    do {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        if let multipartFields {
            let boundary = "test-\(UUID().uuidString)"
            request.headers.add(name: "Content-Type", value: "multipart/form-data; boundary=\(boundary)")
            request.body = .bytes(ByteBuffer(bytes: multipart(multipartFields, boundary: boundary)))
        }
        let response = try await client.execute(request, timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 64 << 20)
        try await client.shutdown()
        return HTTPResult(status: Int(response.status.code), body: Array(buffer: body))
    } catch {
        try? await client.shutdown()
        throw error
    }
}

/// Polls a job until it is done or failed (at most `seconds`).
func waitForJob(port: Int, id: String, seconds: Double = 120) async throws -> [String: Any] {
    let deadline = Date().addingTimeInterval(seconds)
    var seen: Set<String> = []
    while Date() < deadline {
        let r = try await http("GET", "http://127.0.0.1:\(port)/v1/animations/\(id)")
        #expect(r.status == 200)
        let state = r.json
        let status = state["status"] as? String ?? "?"
        seen.insert(status)
        #expect(["queued", "running", "done", "failed"].contains(status))
        if status == "done" || status == "failed" { return state }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("job \(id) did not finish in \(seconds) s (statuses seen: \(seen))")
    return [:]
}

/// What a WebSocket client saw.
final class WSTranscript: @unchecked Sendable {
    var texts: [String] = []
    var binaries: [[UInt8]] = []
}
