// VideoReader.swift — decodes any file FFmpeg can read (mp4, mkv, avi, webm, image files, ...) into
// RGB frames: metadata, exact frame count, sequential decoding with constant memory, seeking to a
// frame index, and resampling to another frame rate (the frame on screen at each output tick).
import CFFmpeg
import Foundation
import Logging

public final class VideoReader {
    public let path: String
    public let width: Int
    public let height: Int
    /// Source frame rate (average), frames per second; 0 when the file does not say.
    public let fps: Double
    /// Duration in seconds as reported by the container (0 when unknown).
    public let duration: Double
    public let hasAudio: Bool
    /// Audio stream duration in seconds and codec name ("aac"), when there is audio.
    public let audioDuration: Double
    public let audioCodec: String?
    /// Codec and container names as FFmpeg calls them ("h264", "mov,mp4,m4a,3gp,3g2,mj2").
    public let codec: String
    public let container: String

    private var handle: OpaquePointer?
    private let containerFrameCount: Int
    private var countedFrames: Int?
    private let logger: Logger
    /// A frame decoded by `seek` (time, duration) that the next `nextFrame` returns.
    private var pending: (Double, Double)?

    /// `device`: an FFmpeg input device format ("v4l2" for a /dev/videoN camera, through libavdevice).
    public init(path: String, device: String? = nil, logger: Logger = Logger(label: "personalive.media")) throws {
        self.path = path
        self.logger = logger
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw MediaError(file: path, device.map { "no such \($0) device (is a camera connected?)" } ?? "no such file")
        }
        guard !isDir.boolValue else { throw MediaError(file: path, "is a directory, not a video") }
        var err = [CChar](repeating: 0, count: 512)
        let opened = device.map { cff_reader_open_format(path, $0, &err, err.count) } ?? cff_reader_open(path, &err, err.count)
        guard let h = opened else {
            throw MediaError(file: path, "FFmpeg cannot read it as \(device.map { "a \($0) device" } ?? "video") (\(String(cString: err)))")
        }
        handle = h
        var info = cff_video_info()
        cff_reader_info(h, &info)
        width = Int(info.width)
        height = Int(info.height)
        fps = info.fps_num > 0 && info.fps_den > 0 ? Double(info.fps_num) / Double(info.fps_den) : 0
        duration = info.duration
        hasAudio = info.has_audio != 0
        audioDuration = info.audio_duration
        let ac = withUnsafeBytes(of: info.audio_codec) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        audioCodec = hasAudio ? ac : nil
        containerFrameCount = Int(info.nb_frames)
        codec = withUnsafeBytes(of: info.codec) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        container = withUnsafeBytes(of: info.format) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        logger.debug("opened \(path): \(width)x\(height) \(fps) fps, \(codec), \(duration) s")
    }

    deinit {
        if let handle { cff_reader_close(handle) }
    }

    /// Frames the container announces (or duration × fps): free, but an edit list can make it
    /// differ from what is shown. For progress estimates; use `frameCount()` for the exact number.
    public var estimatedFrameCount: Int {
        if containerFrameCount > 0 && duration > 0 && fps > 0 {
            return min(containerFrameCount, Int((duration * fps).rounded()))
        }
        if containerFrameCount > 0 { return containerFrameCount }
        return Int((duration * fps).rounded())
    }

    /// The exact number of frames decoding yields at the source rate: the shown video packets are
    /// counted in a demux pass (no decoding), once. Rewinds the reader.
    public func frameCount() throws -> Int {
        if let countedFrames { return countedFrames }
        let n = cff_reader_count_packets(try open())
        guard n >= 0 else { throw error("counting frames failed") }
        pending = nil
        countedFrames = Int(n)
        return Int(n)
    }

    /// How many frames `forEachFrame(fps:)` yields for a constant-rate video: output ticks 1/fps
    /// apart covering the video. With `exact: false` it uses `estimatedFrameCount` (no file pass).
    public func resampledFrameCount(fps target: Double, exact: Bool = true) throws -> Int {
        let n = exact ? try frameCount() : estimatedFrameCount
        guard fps > 0 else { return n }
        let end = Double(n) / fps
        return Swift.max(0, Int((end * target - 1e-6).rounded(.up)))
    }

    /// Decodes the next frame at the source rate, or nil at the end.
    public func nextFrame() throws -> RGBImage? {
        guard let (image, _) = try nextTimedFrame() else { return nil }
        return image
    }

    /// The next frame with its presentation time in seconds from the stream start.
    public func nextTimedFrame() throws -> (RGBImage, Double)? {
        guard let (t, _) = try decode() else { return nil }
        return (try convert(), t)
    }

    /// Positions the reader so that the next `nextFrame()` returns frame `index` (0-based, source rate).
    public func seek(toFrame index: Int) throws {
        guard index >= 0 else { throw MediaError(file: path, "frame index \(index) is negative") }
        let rate = fps > 0 ? fps : 25
        let target = Double(index) / rate
        let h = try open()
        guard cff_reader_seek(h, Swift.max(0, target - 0.5 / rate)) >= 0 else { throw error("seek to frame \(index) failed") }
        pending = nil
        // Decode forward from the keyframe to the requested frame (times within half a frame).
        while true {
            guard let (t, d) = try decode() else {
                throw MediaError(file: path, "cannot seek to frame \(index): the video ends before it")
            }
            if t >= target - 0.5 / rate {
                pending = (t, d)
                return
            }
        }
    }

    /// Calls `body(index, frame)` for every frame (at the source rate, or resampled to `fps`), from the
    /// current position, holding one frame at a time. `body` returns false to stop early.
    public func forEachFrame(fps target: Double? = nil, _ body: (Int, RGBImage) throws -> Bool) throws {
        guard let target, target > 0 else {
            var i = 0
            while let f = try nextFrame() {
                guard try body(i, f) else { return }
                i += 1
            }
            return
        }
        let nominal = fps > 0 ? 1 / fps : 1 / target
        var start: Double?
        var tick = 0
        var last: RGBImage?
        let eps = 1e-6
        while let (t, d) = try decode() {
            let frameDuration = d > 0 ? d : nominal
            if start == nil { start = t }
            let origin = start!
            // Ticks in a gap before this frame repeat the previous frame.
            if let prev = last {
                while origin + Double(tick) / target < t - eps {
                    guard try body(tick, prev) else { return }
                    tick += 1
                }
            }
            // Ticks that fall on this frame's display interval.
            var converted: RGBImage?
            while origin + Double(tick) / target < t + frameDuration - eps {
                if converted == nil { converted = try convert() }
                guard try body(tick, converted!) else { return }
                tick += 1
            }
            if let converted { last = converted }
        }
    }

    /// All frames (source rate or resampled); memory grows with the clip, prefer `forEachFrame`.
    public func readAll(fps target: Double? = nil, maxFrames: Int? = nil) throws -> [RGBImage] {
        var frames: [RGBImage] = []
        try forEachFrame(fps: target) { _, f in
            frames.append(f)
            return maxFrames.map { frames.count < $0 } ?? true
        }
        return frames
    }

    // MARK: - Internals

    private func open() throws -> OpaquePointer {
        guard let handle else { throw MediaError(file: path, "reader is closed") }
        return handle
    }

    private func error(_ what: String) -> MediaError {
        let reason = handle.map { String(cString: cff_reader_error($0)) } ?? "closed"
        return MediaError(file: path, "\(what) (\(reason))")
    }

    /// Decodes the next frame into the C reader and returns its (time, duration), honouring a
    /// pending seek frame.
    private func decode() throws -> (Double, Double)? {
        if let p = pending {
            pending = nil
            return p
        }
        var t = 0.0, d = 0.0
        let r = cff_reader_decode(try open(), &t, &d)
        if r < 0 { throw error("decoding failed") }
        return r == 0 ? nil : (t, d)
    }

    private func convert() throws -> RGBImage {
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        let h = try open()
        let w = width, ht = height
        let r = pixels.withUnsafeMutableBufferPointer { cff_reader_convert_rgb(h, $0.baseAddress, Int32(w), Int32(ht)) }
        guard r >= 0 else { throw error("pixel conversion failed") }
        return try RGBImage(width: width, height: height, pixels: pixels)
    }
}
