// BrowserAndLiveTests.swift — the webcam page in a real browser (Debian's Chromium, headless, with
// its fake camera, driven over the DevTools protocol) showing frames the server generated, and
// `personalive live` as a user runs it: a video file, raw RGB on stdin (with and without dropping),
// and the error for a camera that is not there. Missing prerequisites (chromium, the binary) fail.
import Foundation
import HummingbirdWSClient
import Inference
import Media
import NIOCore
import Serve
import Testing
import Torch

/// Runs a process to completion with stdin bytes; returns (status, stdout, stderr).
func runProcess(_ executable: String, _ arguments: [String], stdin: [UInt8] = []) throws -> (Int32, [UInt8], String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    let input = Pipe(), output = Pipe(), error = Pipe()
    p.standardInput = input
    p.standardOutput = output
    p.standardError = error
    let out = UncheckedCollector(), err = UncheckedCollector()
    output.fileHandleForReading.readabilityHandler = { out.append($0.availableData) }
    error.fileHandleForReading.readabilityHandler = { err.append($0.availableData) }
    try p.run()
    let writer = Thread {
        try? input.fileHandleForWriting.write(contentsOf: stdin)
        try? input.fileHandleForWriting.close()
    }
    writer.start()
    p.waitUntilExit()
    output.fileHandleForReading.readabilityHandler = nil
    error.fileHandleForReading.readabilityHandler = nil
    out.append(output.fileHandleForReading.readDataToEndOfFile())
    err.append(error.fileHandleForReading.readDataToEndOfFile())
    return (p.terminationStatus, [UInt8](out.data), String(decoding: err.data, as: UTF8.self))
}

final class UncheckedCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = Data()
    func append(_ d: Data) { lock.lock(); buffer.append(d); lock.unlock() }
    var data: Data { lock.lock(); defer { lock.unlock() }; return buffer }
}

@Suite(.serialized, .timeLimit(.minutes(5))) struct BrowserAndLiveTests {
    /// The page at / opens Chromium's fake camera, streams to /v1/stream and shows generated frames.
    @Test func webcamPageShowsGeneratedFramesInHeadlessChromium() async throws {
        let chromium = try #require(ServePaths.tool("chromium") ?? ServePaths.tool("chromium-browser"),
                                    "Debian's chromium is needed (make deps installs it)")
        let profile = try ServePaths.scratch()
        defer { try? FileManager.default.removeItem(at: profile) }
        try await withServer { port, _ in
            let browser = Process()
            browser.executableURL = URL(fileURLWithPath: chromium)
            browser.arguments = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                                 "--user-data-dir=\(profile.path)", "--remote-debugging-port=0",
                                 "--remote-allow-origins=*", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                 "--autoplay-policy=no-user-gesture-required", "http://127.0.0.1:\(port)/?autostart"]
            browser.standardOutput = FileHandle.nullDevice
            browser.standardError = FileHandle.nullDevice
            try browser.run()
            defer { browser.terminate(); browser.waitUntilExit() }

            // DevTools: the port Chromium chose, then the page's debugger WebSocket.
            let portFile = profile.appendingPathComponent("DevToolsActivePort")
            var devtools: Int?
            for _ in 0..<600 where devtools == nil {
                if let text = try? String(contentsOf: portFile, encoding: .utf8), let p = Int(text.split(separator: "\n").first ?? "") { devtools = p }
                else { try await Task.sleep(for: .milliseconds(100)) }
            }
            let dport = try #require(devtools, "Chromium did not open its DevTools port within 60 s")
            var debuggerURL: String?
            for _ in 0..<100 where debuggerURL == nil {
                let list = try await http("GET", "http://127.0.0.1:\(dport)/json/list")
                let pages = (try? JSONSerialization.jsonObject(with: Data(list.body))) as? [[String: Any]] ?? []
                debuggerURL = pages.first { ($0["url"] as? String ?? "").contains(":\(port)/") }?["webSocketDebuggerUrl"] as? String
                if debuggerURL == nil { try await Task.sleep(for: .milliseconds(200)) }
            }
            let url = try #require(debuggerURL, "the page did not show up in Chromium's target list")
            let result = WSTranscript()
            try await WebSocketClient.connect(url: url, configuration: .init(maxFrameSize: 64 << 20), logger: testLogger) { inbound, outbound, _ in
                var messages = inbound.messages(maxSize: 64 << 20).makeAsyncIterator()
                let probe = #"JSON.stringify({frames: +document.getElementById('output').dataset.frames, width: document.getElementById('output').naturalWidth, camera: document.getElementById('camera').videoWidth, status: document.getElementById('status').textContent, stats: document.getElementById('stats').textContent})"#
                var id = 0
                let deadline = Date().addingTimeInterval(120)
                while Date() < deadline {
                    id += 1
                    let request = try JSONSerialization.data(withJSONObject: ["id": id, "method": "Runtime.evaluate",
                                                                              "params": ["expression": probe, "returnByValue": true]])
                    try await outbound.write(.text(String(decoding: request, as: UTF8.self)))
                    var value: String?
                    while value == nil, let m = try await messages.next() {
                        guard case .text(let t) = m, let reply = try? JSONSerialization.jsonObject(with: Data(t.utf8)) as? [String: Any],
                              reply["id"] as? Int == id else { continue }
                        value = ((reply["result"] as? [String: Any])?["result"] as? [String: Any])?["value"] as? String ?? t
                    }
                    let state = (try? JSONSerialization.jsonObject(with: Data((value ?? "{}").utf8))) as? [String: Any] ?? [:]
                    result.texts.append(value ?? "")
                    // Done once 16 frames arrived and the latest is decoded: the page bumps its frame
                    // count when a frame arrives, before the <img> has loaded it (naturalWidth 0 meanwhile;
                    // seen under load).
                    if (state["frames"] as? Int ?? 0) >= 16, (state["width"] as? Int ?? 0) > 0 { break }
                    if (state["status"] as? String ?? "").hasPrefix("error") { break }
                    try await Task.sleep(for: .milliseconds(500))
                }
                // A screenshot of the page for people (kept only when PERSONALIVE_SCREENSHOT names a file).
                if let shot = ProcessInfo.processInfo.environment["PERSONALIVE_SCREENSHOT"] {
                    try await outbound.write(.text(#"{"id":999999,"method":"Page.captureScreenshot","params":{"format":"png"}}"#))
                    while let m = try await messages.next() {
                        guard case .text(let t) = m, let reply = try? JSONSerialization.jsonObject(with: Data(t.utf8)) as? [String: Any],
                              reply["id"] as? Int == 999999 else { continue }
                        if let b64 = (reply["result"] as? [String: Any])?["data"] as? String, let png = Data(base64Encoded: b64) {
                            try png.write(to: URL(fileURLWithPath: shot))
                        }
                        break
                    }
                }
                try await outbound.close(.normalClosure, reason: nil)
            }
            let last = (try? JSONSerialization.jsonObject(with: Data((result.texts.last ?? "{}").utf8))) as? [String: Any] ?? [:]
            #expect((last["frames"] as? Int ?? 0) >= 16, "the page showed no generated frames: \(result.texts.suffix(3))")
            #expect(last["width"] as? Int == 64, "the output image is not a generated 64² frame: \(last)")
            #expect((last["camera"] as? Int ?? 0) > 0, "the fake camera did not play: \(last)")
            #expect((last["status"] as? String ?? "").hasPrefix("streaming"), "\(last)")
        }
    }

    /// `personalive serve` as a user starts it: it prints where it listens, answers, and on Ctrl-C
    /// (SIGINT) stops cleanly and removes its work folder.
    @Test func serveCommandStartsAnswersAndStopsCleanly() async throws {
        let bin = try #require(ServePaths.binary, "the personalive executable must be built next to the tests (make test builds it)")
        let dir = try ServePaths.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try PersonaLiveModel.random(modelYAML: ServePaths.tinyYAML).writeModelFile(in: dir, architecture: ServePaths.tinyYAML)
        let tmp = dir.appendingPathComponent("tmp")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = bin
        p.arguments = ["serve", "--model", model, "--port", "0", "--log-level", "warning"]
        var env = ProcessInfo.processInfo.environment
        env["TMPDIR"] = tmp.path
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        let lines = UncheckedCollector()
        out.fileHandleForReading.readabilityHandler = { lines.append($0.availableData) }
        try p.run()
        var port: Int?
        for _ in 0..<600 where port == nil {
            let text = String(decoding: lines.data, as: UTF8.self)
            if let r = text.range(of: "serving on http://127.0.0.1:") {
                port = Int(text[r.upperBound...].prefix { $0.isNumber })
            } else {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        let bound = try #require(port, "serve did not say where it listens: \(String(decoding: lines.data, as: UTF8.self))")
        let health = try await http("GET", "http://127.0.0.1:\(bound)/healthz")
        #expect(health.status == 200 && health.json["status"] as? String == "ok", "\(health.text)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.path).contains { $0.hasPrefix("personalive-serve-") })
        p.interrupt()
        for _ in 0..<300 where p.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        #expect(!p.isRunning, "serve did not stop on SIGINT within 30 s")
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        out.fileHandleForReading.readabilityHandler = nil
        #expect(p.terminationStatus == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.path).isEmpty, "the work folder stayed")
    }

    @Test func liveFromAFileStdinAndAMissingCamera() throws {
        let bin = try #require(ServePaths.binary, "the personalive executable must be built next to the tests (make test builds it)")
        let dir = try ServePaths.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try PersonaLiveModel.random(modelYAML: ServePaths.tinyYAML).writeModelFile(in: dir, architecture: ServePaths.tinyYAML)
        let reference = dir.appendingPathComponent("ref.png").path
        try ImageIO.write(syntheticFrame(0), to: reference)
        let clip = dir.appendingPathComponent("clip.mp4").path
        try writeClip(clip, frames: 10, fps: 25, size: 80)

        // A video file, played at its rate (10 frames at 25 fps), to an mp4: every frame comes out.
        let out = dir.appendingPathComponent("live.mp4").path
        let (s1, _, e1) = try runProcess(bin.path, ["live", "--model", model, "--reference", reference, "--input", clip,
                                                    "--output", out, "--drop", "none"])
        #expect(s1 == 0, "\(e1)")
        #expect(try VideoReader(path: out).readAll().count == 10)
        #expect(e1.contains("chunk    0: latency") && e1.contains("queue"), "\(e1)")
        #expect(e1.contains("live: 10 frames in, 10 out, 0 dropped") && e1.contains("p95"), "\(e1)")

        // Raw RGB on stdin, raw RGB on stdout: 9 frames of 48x40 → 9 frames of 64².
        let raw = (0..<9).flatMap { syntheticFrame($0, width: 48, height: 40).pixels }
        let (s2, stdout2, e2) = try runProcess(bin.path, ["live", "--model", model, "--reference", reference, "--input", "-",
                                                          "--size", "48x40", "--output", "-", "--drop", "none"], stdin: raw)
        #expect(s2 == 0, "\(e2)")
        #expect(stdout2.count == 9 * 64 * 64 * 3, "\(stdout2.count) bytes")
        #expect(e2.contains("live: 9 frames in, 9 out, 0 dropped"), "\(e2)")

        // 200 frames as fast as the pipe takes them, a queue of 4, dropping the newest: frames are
        // dropped, each one counted (in = out + dropped).
        let burst = (0..<200).flatMap { syntheticFrame($0, width: 48, height: 40).pixels }
        let rawOut = dir.appendingPathComponent("out.rgb").path
        let (s3, _, e3) = try runProcess(bin.path, ["live", "--model", model, "--reference", reference, "--input", "-",
                                                    "--size", "48x40", "--output", rawOut, "--drop", "newest", "--queue", "4"], stdin: burst)
        #expect(s3 == 0, "\(e3)")
        let summary = try #require(e3.split(separator: "\n").last { $0.hasPrefix("live: ") }.map(String.init), "\(e3)")
        let numbers = summary.split(whereSeparator: { !$0.isNumber }).prefix(3).compactMap { Int($0) }
        #expect(numbers.count == 3 && numbers[0] == 200 && numbers[0] == numbers[1] + numbers[2] && numbers[2] > 0, "\(summary)")
        let written = try FileManager.default.attributesOfItem(atPath: rawOut)[.size] as? Int ?? -1
        #expect(numbers.count == 3 && written == numbers[1] * 64 * 64 * 3)

        // Truncated raw input: named, non-zero exit.
        let (s4, _, e4) = try runProcess(bin.path, ["live", "--model", model, "--reference", reference, "--input", "-",
                                                    "--size", "48x40", "--output", "-"], stdin: Array(raw.prefix(48 * 40 * 3 + 100)))
        #expect(s4 != 0 && e4.contains("ended inside frame 1"), "\(e4)")

        // A camera that is not there (this machine has none): a clear error through the V4L2 path.
        let (s5, _, e5) = try runProcess(bin.path, ["live", "--model", model, "--reference", reference, "--input", "/dev/video97",
                                                    "--output", dir.appendingPathComponent("cam.mp4").path])
        #expect(s5 != 0 && e5.contains("/dev/video97") && e5.contains("no such v4l2 device"), "\(e5)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("cam.mp4").path))
    }
}
