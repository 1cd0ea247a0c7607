// LiveMode.swift — `personalive live`: the reference's inference_online.py / webcam loop without a
// browser: frames arrive from a source at their own pace (a camera, a video file played at its
// frame rate, raw RGB on a pipe), wait in a bounded queue, and go through the StreamingPipeline a
// chunk at a time; generated frames go to a sink as they come out. When generation falls behind,
// the queue's policy decides explicitly (drop the newest frame, drop the oldest, or make the
// source wait) and every dropped frame is counted. Each chunk reports its latency (input frame in →
// output frame out), the output FPS and the queue depth; the end reports median and p95.
import Foundation
import Logging
import Media
import Torch

/// Where live frames come from. `next()` blocks until a frame is due; nil at the end.
public protocol LiveSource: AnyObject {
    var description: String { get }
    func next() throws -> RGBImage?
}

/// A video file played at its own frame rate (frames are released at their presentation times),
/// or a camera (`device: "v4l2"`), whose frames arrive at the capture rate.
public final class VideoLiveSource: LiveSource {
    public let reader: VideoReader
    let realtime: Bool
    private var clockStart: UInt64?
    public let description: String

    public init(path: String, device: String? = nil, logger: Logger) throws {
        reader = try VideoReader(path: path, device: device, logger: logger)
        realtime = device == nil
        description = device.map { "\($0) device \(path)" } ?? "\(path) (\(reader.width)x\(reader.height), \(reader.fps) fps)"
    }

    public func next() throws -> RGBImage? {
        guard let (image, t) = try reader.nextTimedFrame() else { return nil }
        if realtime {
            let now = DispatchTime.now().uptimeNanoseconds
            let start = clockStart ?? now
            clockStart = start
            let due = start + UInt64(max(0, t) * 1e9)
            if due > now { usleep(UInt32(min(Double(due - now) / 1e3, 10e6))) }
        }
        return image
    }
}

/// Raw packed RGB24 frames of a fixed size on a file handle (stdin), as fast as they are written.
public final class RawLiveSource: LiveSource {
    let handle: FileHandle
    public let width: Int, height: Int
    public let description: String
    private var frames = 0

    public init(handle: FileHandle, width: Int, height: Int, name: String = "stdin") {
        self.handle = handle
        self.width = width
        self.height = height
        description = "raw RGB \(width)x\(height) on \(name)"
    }

    public func next() throws -> RGBImage? {
        let size = width * height * 3
        var bytes: [UInt8] = []
        bytes.reserveCapacity(size)
        while bytes.count < size {
            let data = handle.readData(ofLength: size - bytes.count)
            if data.isEmpty { break }
            bytes += data
        }
        if bytes.isEmpty { return nil }
        guard bytes.count == size else {
            throw InferenceError("\(description): the input ended inside frame \(frames) (\(bytes.count) of \(size) bytes); is --size right?")
        }
        frames += 1
        return try RGBImage(width: width, height: height, pixels: bytes)
    }
}

/// Where generated frames go.
public protocol LiveSink: AnyObject {
    func write(_ frame: RGBImage) throws
    /// Completes the output (a video file appears only now).
    func finish() throws
}

/// An mp4 (or mkv/mov) file, written atomically by VideoWriter.
public final class VideoLiveSink: LiveSink {
    let writer: VideoWriter
    public init(path: String, size: Int, fps: Double, logger: Logger) throws {
        writer = try VideoWriter(path: path, width: size, height: size, options: .init(fps: fps), logger: logger)
    }
    public func write(_ frame: RGBImage) throws { try writer.write(frame) }
    public func finish() throws { try writer.finish() }
}

/// Raw packed RGB24 frames to a pipe (stdout for `-`), or to a file that appears complete when the
/// stream ends (written to a temporary sibling, renamed by `finish`, removed if never finished).
public final class RawLiveSink: LiveSink {
    let handle: FileHandle
    let file: (temporary: String, destination: String)?
    private var finished = false

    public init(handle: FileHandle) {
        self.handle = handle
        file = nil
    }

    public init(path: String) throws {
        try AtomicOutput.ensureParentDirectory(of: path)
        let temporary = AtomicOutput.temporarySibling(of: path)
        guard FileManager.default.createFile(atPath: temporary, contents: nil), let h = FileHandle(forWritingAtPath: temporary) else {
            throw InferenceError("\(path): cannot create the output file")
        }
        handle = h
        file = (temporary, path)
    }

    deinit {
        if let file, !finished {
            try? handle.close()
            AtomicOutput.discard(file.temporary)
        }
    }

    public func write(_ frame: RGBImage) throws { try handle.write(contentsOf: frame.pixels) }

    public func finish() throws {
        guard let file else { return }
        try handle.close()
        try AtomicOutput.commit(file.temporary, to: file.destination)
        finished = true
    }
}

public enum DropPolicy: String, CaseIterable, Sendable {
    /// A frame that finds the queue full is dropped (what is queued stays).
    case newest
    /// A frame that finds the queue full pushes the oldest queued frame out (lowest latency).
    case oldest
    /// The source waits until there is room (no frame is ever dropped; a camera's own buffer may overflow).
    case none
}

public struct LiveChunkReport: Sendable {
    public let chunk: Int
    /// Input frame in → output frame out of the driving frames this chunk emitted, seconds.
    public let latencies: [Double]
    /// Wall time of the chunk's model work.
    public let seconds: Double
    /// Frames written per second since the first chunk.
    public let fps: Double
    public let queueDepth: Int
    public let dropped: Int
}

public struct LiveSummary: Sendable {
    public let framesIn: Int
    public let framesOut: Int
    public let dropped: Int
    public let latencies: [Double]
    public let seconds: Double
    public var fps: Double { Double(framesOut) / max(seconds, 1e-9) }

    public static func quantile(_ values: [Double], _ q: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let s = values.sorted()
        return s[min(s.count - 1, Int((q * Double(s.count - 1)).rounded()))]
    }
    public var medianLatency: Double { Self.quantile(latencies, 0.5) }
    public var p95Latency: Double { Self.quantile(latencies, 0.95) }
}

public final class LiveSession {
    public let pipeline: StreamingPipeline
    public let policy: DropPolicy
    public let queueCapacity: Int
    let logger: Logger

    private let condition = NSCondition()
    private var queue: [(image: RGBImage, arrived: UInt64)] = []
    private var ended = false
    private var sourceError: Error?
    private var received = 0
    private var dropped = 0
    private var stop = false

    public init(pipeline: StreamingPipeline, policy: DropPolicy, queueCapacity: Int, logger: Logger) throws {
        guard queueCapacity >= pipeline.chunkFrames else {
            throw InferenceError("--queue must hold at least one chunk (\(pipeline.chunkFrames) frames), got \(queueCapacity)")
        }
        self.pipeline = pipeline
        self.policy = policy
        self.queueCapacity = queueCapacity
        self.logger = logger
    }

    /// Runs until the source ends: a reader thread fills the queue, this thread generates.
    public func run(reference: RGBImage, source: LiveSource, sink: LiveSink,
                    report: (LiveChunkReport) -> Void = { _ in }) throws -> LiveSummary {
        try pipeline.setReference(reference)
        let reader = Thread { [unowned self] in self.read(source) }
        reader.name = "personalive-live-source"
        reader.start()
        defer {
            condition.lock(); stop = true; condition.broadcast(); condition.unlock()
        }
        let m = pipeline.chunkFrames
        var arrivals: [Int: UInt64] = [:]
        var accepted = 0, written = 0, chunk = 0
        var latencies: [Double] = []
        var last: RGBImage?
        var firstOut: UInt64?
        let start = DispatchTime.now().uptimeNanoseconds
        while true {
            condition.lock()
            while queue.count < m && !ended { condition.wait() }
            if let sourceError { condition.unlock(); throw sourceError }
            var images = queue.prefix(m).map(\.image)
            let times = queue.prefix(m).map(\.arrived)
            queue.removeFirst(images.count)
            let depth = queue.count, droppedNow = dropped, done = ended && queue.isEmpty
            condition.broadcast()
            condition.unlock()
            // After the end, pad with the last frame until every accepted frame has come out.
            if images.isEmpty && written >= accepted {
                guard accepted > 0 else { throw InferenceError("live: \(source.description) gave no frames") }
                break
            }
            for t in times { arrivals[accepted] = t; accepted += 1 }
            if let l = images.last { last = l }
            guard let pad = last else { break }
            while images.count < m { images.append(pad) }
            let t0 = DispatchTime.now().uptimeNanoseconds
            let frames = try pipeline.process(images: images)
            let t1 = DispatchTime.now().uptimeNanoseconds
            var chunkLatencies: [Double] = []
            for f in frames {
                guard let i = f.drivingIndex, i < accepted else { continue }
                try sink.write(RGBImage(chw: f.image.to(.cpu), range: .unit))
                written += 1
                let now = DispatchTime.now().uptimeNanoseconds
                firstOut = firstOut ?? now
                if let arrived = arrivals.removeValue(forKey: i) { chunkLatencies.append(Double(now - arrived) / 1e9) }
            }
            latencies += chunkLatencies
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - (firstOut ?? start)) / 1e9
            report(LiveChunkReport(chunk: chunk, latencies: chunkLatencies, seconds: Double(t1 - t0) / 1e9,
                                   fps: written > 1 ? Double(written - 1) / max(elapsed, 1e-9) : 0,
                                   queueDepth: depth, dropped: droppedNow))
            chunk += 1
            if done && written >= accepted { break }
        }
        try sink.finish()
        condition.lock()
        let summary = LiveSummary(framesIn: received, framesOut: written, dropped: dropped, latencies: latencies,
                                  seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        condition.unlock()
        guard summary.framesIn == summary.framesOut + summary.dropped else {
            throw InferenceError("live: \(summary.framesIn) frames in, \(summary.framesOut) out and \(summary.dropped) dropped do not add up")
        }
        return summary
    }

    private func read(_ source: LiveSource) {
        do {
            while let image = try source.next() {
                let now = DispatchTime.now().uptimeNanoseconds
                condition.lock()
                if stop { condition.unlock(); return }
                received += 1
                if queue.count >= queueCapacity {
                    switch policy {
                    case .newest:
                        dropped += 1
                        condition.unlock()
                        continue
                    case .oldest:
                        queue.removeFirst()
                        dropped += 1
                    case .none:
                        while queue.count >= queueCapacity && !stop { condition.wait() }
                    }
                }
                queue.append((image, now))
                condition.broadcast()
                condition.unlock()
            }
        } catch {
            condition.lock()
            sourceError = error
            condition.unlock()
        }
        condition.lock()
        ended = true
        condition.broadcast()
        condition.unlock()
    }
}
