// StreamSession.swift — one `GET /v1/stream` WebSocket: the reference's webcam server
// (webcam/vid2vid.py + its FastAPI websocket loop) over our StreamingPipeline. Protocol:
//   client → binary: the reference portrait (PNG or JPEG), first;
//   server → text  {"type":"ready","chunk":4,"latency_frames":12,"size":S};
//   client → binary: driving frames (JPEG), any size, any number;
//   server → binary: one generated JPEG per frame that comes out (warm-up transition frames too),
//            then text {"type":"stats", …} after every chunk (input frame in → output frame out);
//   server → text  {"type":"error","error":…} and a close, on bad input, or (in answer to the first
//            message) when the stream limit is reached.
// Each connection owns one pipeline (its engine, queue and reference banks) over the shared model.
import Foundation
import HummingbirdWebSocket
import Inference
import Logging
import Media
import NIOCore

/// How many streams run, against the limit.
final class StreamSlots: @unchecked Sendable {
    let limit: Int
    private let lock = NSLock()
    private var open = 0
    init(limit: Int) { self.limit = limit }

    func take() -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard open < limit else { return false }
        open += 1
        return true
    }

    func give() {
        lock.lock(); defer { lock.unlock() }
        open -= 1
    }

    var busyMessage: String {
        "server busy: \(limit) streams are open (the limit, --max-streams); try again later"
    }

    var count: Int {
        lock.lock(); defer { lock.unlock() }
        return open
    }
}

struct StreamStats: Codable {
    var type = "stats"
    /// Driving frames received and generated frames sent so far (warm-up frames included in `frames_out`).
    var frames_in: Int
    var frames_out: Int
    /// Wall time of this chunk's model work.
    var chunk_ms: Double
    /// Input frame in → its generated frame out, for this chunk's driving frames (ms).
    var latency_ms: [Double]
    /// Generated frames per second over the connection.
    var fps: Double
}

final class StreamSession {
    let modelLock: ModelLock
    let scratch: URL
    let seed: UInt64
    let logger: Logger
    private var pipeline: StreamingPipeline?
    private var buffered: [RGBImage] = []
    /// Arrival time of each driving frame, by index.
    private var arrivals: [Int: UInt64] = [:]
    private var framesIn = 0, framesOut = 0
    private var started: UInt64 = 0

    init(modelLock: ModelLock, scratch: URL, seed: UInt64, logger: Logger) {
        self.modelLock = modelLock
        self.scratch = scratch
        self.seed = seed
        self.logger = logger
    }

    static func json<T: Encodable>(_ value: T) -> String {
        (try? String(decoding: JSONEncoder().encode(value), as: UTF8.self)) ?? "{}"
    }

    static func error(_ message: String) -> String {
        String(decoding: APIError.body(message), as: UTF8.self).replacingOccurrences(of: "{", with: #"{"type":"error","#, options: [.anchored])
    }

    /// Runs the protocol until the client closes (or sends something it cannot use).
    func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
        defer { release() }
        for try await message in inbound.messages(maxSize: 16 << 20) {
            guard case .binary(var buffer) = message else {
                try await outbound.write(.text(Self.error("send images as binary messages (the reference first, then JPEG frames)")))
                continue
            }
            let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
            do {
                if pipeline == nil {
                    try await setReference(bytes)
                    let s = modelLock.model.settings.image_size
                    try await outbound.write(.text(#"{"type":"ready","chunk":\#(pipeline!.chunkFrames),"latency_frames":\#(pipeline!.latencyFrames),"size":\#(s)}"#))
                } else {
                    try await frame(bytes, outbound: outbound)
                }
            } catch let e as APIError {
                try await outbound.write(.text(Self.error(e.message)))
                try await outbound.close(.unacceptableData, reason: String(e.message.prefix(120)))
                return
            }
        }
    }

    private func setReference(_ bytes: [UInt8]) async throws {
        let image = try ImageBytes.decode(bytes, what: "reference", scratch: scratch, logger: logger)
        let (lock, seed, logger) = (modelLock, self.seed, self.logger)
        let made = try await onThread("personalive-stream") { () -> UncheckedBox<StreamingPipeline> in
            let p = try StreamingPipeline(sharing: lock, seed: seed, logger: logger)
            try p.setReference(image)
            return UncheckedBox(p)
        }
        pipeline = made.value
        started = DispatchTime.now().uptimeNanoseconds
    }

    private func frame(_ bytes: [UInt8], outbound: WebSocketOutboundWriter) async throws {
        guard let pipeline else { return }
        let image = try ImageBytes.decode(bytes, what: "frame \(framesIn)", scratch: scratch, logger: logger)
        arrivals[framesIn] = DispatchTime.now().uptimeNanoseconds
        framesIn += 1
        buffered.append(image)
        guard buffered.count == pipeline.chunkFrames else { return }
        let images = buffered
        buffered = []
        let box = UncheckedBox(pipeline)
        let t0 = DispatchTime.now().uptimeNanoseconds
        let out = try await onThread("personalive-stream") { () -> [(Int?, [UInt8])] in
            try box.value.process(images: images).map { ($0.drivingIndex, try ImageBytes.jpeg($0.image)) }
        }
        let t1 = DispatchTime.now().uptimeNanoseconds
        var latencies: [Double] = []
        for (index, jpeg) in out {
            try await outbound.write(.binary(ByteBuffer(bytes: jpeg)))
            framesOut += 1
            if let index, let arrived = arrivals.removeValue(forKey: index) {
                latencies.append(Double(DispatchTime.now().uptimeNanoseconds - arrived) / 1e6)
            }
        }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        try await outbound.write(.text(Self.json(StreamStats(frames_in: framesIn, frames_out: framesOut,
                                                             chunk_ms: Double(t1 - t0) / 1e6, latency_ms: latencies,
                                                             fps: Double(framesOut) / max(elapsed, 1e-9)))))
    }

    /// The pipeline goes with the connection (its hooks leave the shared model under the lock).
    private func release() {
        pipeline = nil
        buffered = []
    }
}
