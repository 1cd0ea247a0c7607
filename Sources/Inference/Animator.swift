// Animator.swift — offline animation on the streaming path (inference_offline.py with
// Pose2VideoPipeline_Stream, REFERENCE.md §A2, but through the same StreamingPipeline as live use):
// driving frames are read one chunk at a time and written as they come out, so memory does not grow
// with the video. Departures from the reference, on purpose: the output keeps the driving video's
// frame rate (the reference hard-codes 25 fps and drifts out of sync), every driving frame comes out
// (the tail is padded ping-pong, as the reference pads, and trimmed), the driving audio is copied in
// sync, and the output is written to a temporary file that is renamed only when complete.
import Foundation
import Logging
import Media
import Models
import NN
import Torch

/// Where driving frames come from, front to back. Frames past the end are never asked for: the
/// animator reflects those indices onto real frames.
protocol DrivingSource: AnyObject {
    var fps: Double { get }
    /// Frames known to exist so far; `ended` once the source has no more.
    var available: Int { get }
    var ended: Bool { get }
    /// Reads ahead until frame `index` exists or the source ends.
    func prepare(upTo index: Int) throws
    func chunk(_ indices: [Int]) throws -> DrivingChunk
}

/// A driving video, decoded frame by frame; only the last frames are kept (for tail padding).
final class VideoDrivingSource: DrivingSource {
    let reader: VideoReader
    let frontEnds: FrontEnds
    let limit: Int?
    private var frames: [Int: RGBImage] = [:]
    private(set) var available = 0
    private(set) var ended = false
    var fps: Double { reader.fps > 0 ? reader.fps : 25 }

    init(path: String, frontEnds: FrontEnds, maxFrames: Int?, logger: Logger) throws {
        reader = try VideoReader(path: path, logger: logger)
        self.frontEnds = frontEnds
        limit = maxFrames
    }

    func prepare(upTo index: Int) throws {
        while !ended && available <= index {
            if let limit, available >= limit { ended = true; break }
            guard let f = try reader.nextFrame() else { ended = true; break }
            frames[available] = f
            available += 1
            // Tail padding reflects at most a window back.
            frames[available - 33] = nil
        }
    }

    func chunk(_ indices: [Int]) throws -> DrivingChunk {
        let images = try indices.map { i -> RGBImage in
            guard let f = frames[i] else { throw InferenceError("\(reader.path): frame \(i) is no longer held") }
            return f
        }
        return try frontEnds.drivingChunk(frontEnds.frames(images))
    }
}

/// A pose file (and optional motion tokens).
final class PoseDrivingSource: DrivingSource {
    let data: PoseData
    let motion: Tensor?
    let fps: Double
    let available: Int
    let ended = true
    let device: Device
    let dtype: DType

    init(data: PoseData, motion: Tensor?, maxFrames: Int?, device: Device, dtype: DType) {
        self.data = data
        self.motion = motion
        fps = data.fps
        available = min(data.frames.count, maxFrames ?? .max)
        (self.device, self.dtype) = (device, dtype)
    }

    func prepare(upTo index: Int) throws {}

    func chunk(_ indices: [Int]) throws -> DrivingChunk {
        let pose = try data.detection(indices)
        let m = try motion.map { try $0.indexSelect(0, Tensor(indices.map(Int64.init))).to(device, dtype) }
        return DrivingChunk(pose: pose, motion: m, frames: nil)
    }
}

/// Frames already in memory, (n, 3, S, S) in [-1, 1] (validation and evaluation clips).
final class TensorDrivingSource: DrivingSource {
    let frames: Tensor
    let frontEnds: FrontEnds
    let fps: Double
    let available: Int
    let ended = true

    init(frames: Tensor, fps: Double, frontEnds: FrontEnds) {
        self.frames = frames
        self.fps = fps
        self.frontEnds = frontEnds
        available = frames.shape[0]
    }

    func prepare(upTo index: Int) throws {}

    func chunk(_ indices: [Int]) throws -> DrivingChunk {
        try frontEnds.drivingChunk(frames.indexSelect(0, Tensor(indices.map(Int64.init)).to(frames.device)))
    }
}

public struct AnimationOptions: Sendable {
    public var maxFrames: Int?
    public var keepWarmup = false
    /// reference | driving | keypoints | generated side by side.
    public var grid = false
    public var crf = 18
    public init() {}
}

public struct AnimationSummary: Sendable {
    public let frames: Int
    public let warmupFrames: Int
    public let fps: Double
    public let seconds: Double
    public let hasAudio: Bool
    public let keyframes: Int
}

public final class Animator {
    public let pipeline: StreamingPipeline
    let logger: Logger

    public init(pipeline: StreamingPipeline, logger: Logger = Logger(label: "personalive.animate")) {
        self.pipeline = pipeline
        self.logger = logger
    }

    /// `animate --driving`: a portrait driven by a video.
    public func animate(reference: RGBImage, drivingVideo path: String, output: String, options: AnimationOptions,
                        progress: (Int, Int?) -> Void = { _, _ in }) throws -> AnimationSummary {
        let source = try VideoDrivingSource(path: path, frontEnds: pipeline.frontEnds, maxFrames: options.maxFrames,
                                            logger: logger)
        let total = source.reader.estimatedFrameCount
        return try run(reference: reference, source: source, output: output, options: options,
                       audioFrom: source.reader.hasAudio ? path : nil,
                       expected: options.maxFrames.map { min($0, total) } ?? total, progress: progress)
    }

    /// `animate --pose`: a portrait driven by pose data (and motion tokens, else a still expression).
    public func animate(reference: RGBImage, pose: PoseData, motion: Tensor?, output: String, options: AnimationOptions,
                        progress: (Int, Int?) -> Void = { _, _ in }) throws -> AnimationSummary {
        let model = pipeline.model
        let source = PoseDrivingSource(data: pose, motion: motion, maxFrames: options.maxFrames, device: model.device,
                                       dtype: model.dtype)
        return try run(reference: reference, source: source, output: output, options: options, audioFrom: nil,
                       expected: source.available, progress: progress)
    }

    /// Ping-pong reflection of a position past the end onto a real frame (frames[-2], frames[-3], …).
    public static func reflect(_ i: Int, count n: Int) -> Int {
        guard n > 1 else { return 0 }
        let period = 2 * (n - 1)
        let q = i % period
        return q < n ? q : period - q
    }

    /// The driving frames and the frames of the model's input size that a chunk of `indices`
    /// covers, with every position past the end reflected.
    func chunkIndices(base: Int, count m: Int, source: DrivingSource) throws -> [Int] {
        try source.prepare(upTo: base + m - 1)
        return (base..<(base + m)).map { $0 < source.available ? $0 : Self.reflect($0, count: source.available) }
    }

    /// Feeds the source through the pipeline chunk by chunk (the tail padded ping-pong) and hands
    /// every emitted frame to `body`: the warm-up frames when `keepWarmup`, then each driving
    /// frame once, in order. `body` sees at most a chunk at a time.
    /// `chunkSeconds`, when given, hears the wall time of each chunk (front-ends and one stream call).
    func stream(source: DrivingSource, keepWarmup: Bool, chunkSeconds: ((Double) -> Void)? = nil,
                body: (StreamFrame) throws -> Void) throws {
        try source.prepare(upTo: 0)
        guard source.available > 0 else { throw InferenceError("the driving input has no decodable frame") }
        let m = pipeline.chunkFrames
        var written = 0, chunk = 0
        while !(source.ended && written >= source.available) {
            let indices = try chunkIndices(base: chunk * m, count: m, source: source)
            let started = DispatchTime.now().uptimeNanoseconds
            let emitted = try pipeline.process(pipeline.withModel { try source.chunk(indices) })
            if chunkSeconds != nil, case .cuda(let d) = pipeline.model.device { try Torch.cudaSynchronize(d) }
            chunkSeconds?(Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
            for frame in emitted {
                if frame.isWarmup {
                    if keepWarmup { try body(frame) }
                } else if let i = frame.drivingIndex, !(source.ended && i >= source.available) {
                    try body(frame)
                    written += 1
                }
            }
            chunk += 1
        }
    }

    /// A short clip in memory: frames (n, 3, S, S) in [-1, 1] driving a reference (1, 3, S, S) in
    /// [-1, 1]; returns the n generated frames (what `animate` would write), for validation and evaluation.
    /// `chunkSeconds` hears the wall time of every chunk (driving front-ends plus one stream call, the
    /// device synchronised before the clock stops).
    public func animate(reference: Tensor, frames: Tensor, chunkSeconds: ((Double) -> Void)? = nil) throws -> [StreamFrame] {
        try pipeline.setReference(pipeline.withModel { try pipeline.frontEnds.encodeReference(reference) })
        var out: [StreamFrame] = []
        try stream(source: TensorDrivingSource(frames: frames, fps: 25, frontEnds: pipeline.frontEnds), keepWarmup: false,
                   chunkSeconds: chunkSeconds) {
            out.append($0)
        }
        return out
    }

    func run(reference: RGBImage, source: DrivingSource, output: String, options: AnimationOptions, audioFrom: String?,
             expected: Int?, progress: (Int, Int?) -> Void) throws -> AnimationSummary {
        let start = Date()
        try source.prepare(upTo: 0)
        guard source.available > 0 else { throw InferenceError("the driving input has no decodable frame") }
        try pipeline.setReference(reference)
        guard let ref = pipeline.reference else { throw InferenceError("the reference was not encoded") }
        let s = pipeline.model.settings.image_size
        let refImage = try (ref.image.select(0, 0).to(.float32) + 1) / 2
        if options.keepWarmup && audioFrom != nil {
            logger.notice("--keep-warmup: the driving audio is not copied (the 12 transition frames would put it out of sync)")
        }
        var writerOptions = VideoWriter.Options(fps: source.fps, crf: options.crf)
        writerOptions.audioFrom = options.keepWarmup ? nil : audioFrom
        let writer = try VideoWriter(path: output, width: options.grid ? 4 * s : s, height: s, options: writerOptions,
                                     logger: logger)
        var written = 0, warmup = 0
        try stream(source: source, keepWarmup: options.keepWarmup) { frame in
            var image = frame.image
            if options.grid {
                let driving = try frame.driving.map { try ($0.to(.float32) + 1) / 2 } ?? Tensor.zeros(image.shape)
                image = try Tensor.cat([refImage, driving, frame.canvas.to(.float32), image], dim: 2)
            }
            try writer.write(RGBImage(chw: image.to(.cpu), range: .unit))
            if frame.isWarmup { warmup += 1 } else { written += 1 }
            if !frame.isWarmup && written % pipeline.chunkFrames == 0 {
                progress(written, source.ended ? source.available : expected)
            }
        }
        progress(written, written)
        try writer.finish()
        return AnimationSummary(frames: written, warmupFrames: warmup, fps: source.fps, seconds: Date().timeIntervalSince(start),
                                hasAudio: writer.hasAudio, keyframes: pipeline.engine.keyframeCalls.count)
    }

    /// `pose extract`: the pose data (and motion tokens) of a video's frames, computed exactly as
    /// `animate --driving` computes them (same chunks of frames through the same front-ends).
    public static func extractPose(video path: String, frontEnds: FrontEnds, chunkFrames m: Int, maxFrames: Int?,
                                   logger: Logger, progress: (Int) -> Void = { _ in }) throws -> (PoseData, Tensor) {
        let source = try VideoDrivingSource(path: path, frontEnds: frontEnds, maxFrames: maxFrames, logger: logger)
        var frames: [PoseFrame] = []
        var motion: [Tensor] = []
        var base = 0
        try source.prepare(upTo: 0)
        guard source.available > 0 else { throw InferenceError("\(path): no decodable frame") }
        while !(source.ended && base >= source.available) {
            try source.prepare(upTo: base + m - 1)
            let indices = (base..<(base + m)).map { $0 < source.available ? $0 : reflect($0, count: source.available) }
            let chunk = try source.chunk(indices)
            let real = min(m, source.available - base)
            frames += try PoseData.frames(chunk.pose).prefix(real)
            if let tokens = chunk.motion { motion.append(try tokens.narrow(0, start: 0, length: real).to(.cpu).to(.float32)) }
            base += m
            progress(frames.count)
        }
        return (PoseData(fps: source.fps, source: (path as NSString).lastPathComponent, frames: frames),
                try Tensor.cat(motion, dim: 0))
    }
}
