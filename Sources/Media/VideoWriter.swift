// VideoWriter.swift — encodes RGB frames to mp4 (H.264 via libx264 at a CRF, falling back to
// MPEG-4 Part 2 when libx264 is missing; yuv420p), optionally copying the audio stream of another
// file (the driving video's sound). Writes to a temporary sibling and renames on `finish()`, so a
// failed or abandoned writer leaves nothing at the destination.
import CFFmpeg
import Foundation
import Logging

public final class VideoWriter {
    public enum Codec: String, Sendable {
        /// libx264 when available, else MPEG-4 Part 2.
        case automatic
        case h264 = "libx264"
        case mpeg4
    }

    public struct Options: Sendable {
        public var fps: Double
        /// x264 constant rate factor (lower is better; 18 is visually lossless).
        public var crf: Int
        public var preset: String
        public var codec: Codec
        /// A media file whose first audio stream is copied into the output (cut to the video length).
        public var audioFrom: String?

        public init(fps: Double = 25, crf: Int = 18, preset: String = "medium", codec: Codec = .automatic, audioFrom: String? = nil) {
            self.fps = fps
            self.crf = crf
            self.preset = preset
            self.codec = codec
            self.audioFrom = audioFrom
        }
    }

    public let path: String
    public let width: Int
    public let height: Int
    public let options: Options
    /// The encoder in use ("libx264" or "mpeg4").
    public let codecName: String
    /// Whether an audio stream is being copied.
    public let hasAudio: Bool
    public private(set) var framesWritten = 0

    private var handle: OpaquePointer?
    private let temporaryPath: String
    private var finished = false
    private let logger: Logger

    public init(path: String, width: Int, height: Int, options: Options = Options(),
                logger: Logger = Logger(label: "personalive.media")) throws {
        guard width > 0, height > 0, width % 2 == 0, height % 2 == 0 else {
            throw MediaError(file: path, "yuv420p video needs a positive, even frame size, got \(width)x\(height)")
        }
        guard options.fps > 0, options.fps.isFinite else { throw MediaError(file: path, "fps must be positive, got \(options.fps)") }
        if let audio = options.audioFrom, !FileManager.default.fileExists(atPath: audio) {
            throw MediaError(file: audio, "audio source does not exist")
        }
        self.path = path
        self.width = width
        self.height = height
        self.options = options
        self.logger = logger
        try AtomicOutput.ensureParentDirectory(of: path)
        temporaryPath = AtomicOutput.temporarySibling(of: path)
        let (num, den) = VideoWriter.rational(options.fps)
        var err = [CChar](repeating: 0, count: 512)
        let codecArg = options.codec == .automatic ? "" : options.codec.rawValue
        guard let h = cff_writer_open(temporaryPath, Int32(width), Int32(height), num, den, Int32(options.crf),
                                      options.preset, codecArg, options.audioFrom, &err, err.count) else {
            AtomicOutput.discard(temporaryPath)
            let reason = String(cString: err)
            let culprit = reason.contains("audio") ? (options.audioFrom ?? path) : path
            throw MediaError(file: culprit, "cannot start writing video: \(reason)")
        }
        handle = h
        codecName = String(cString: cff_writer_codec(h))
        hasAudio = cff_writer_has_audio(h) != 0
        if options.audioFrom != nil && !hasAudio {
            logger.info("\(options.audioFrom!) has no audio stream; writing video only")
        }
        logger.debug("writing \(path) with \(codecName), \(width)x\(height) @ \(options.fps) fps")
    }

    deinit {
        if let handle { cff_writer_free(handle) }
        if !finished { AtomicOutput.discard(temporaryPath) }
    }

    /// Encodes one frame; it must have the writer's size.
    public func write(_ frame: RGBImage) throws {
        guard let h = handle, !finished else { throw MediaError(file: path, "writer is already finished") }
        guard frame.width == width, frame.height == height else {
            throw MediaError(file: path, "frame \(framesWritten) is \(frame.width)x\(frame.height), the video is \(width)x\(height)")
        }
        let r = frame.pixels.withUnsafeBufferPointer { cff_writer_write_rgb(h, $0.baseAddress) }
        guard r >= 0 else { throw fail("encoding frame \(framesWritten) failed") }
        framesWritten += 1
    }

    /// Flushes the encoder, finishes the file and moves it into place.
    public func finish() throws {
        guard let h = handle, !finished else { throw MediaError(file: path, "writer is already finished") }
        guard framesWritten > 0 else { throw fail("no frames were written") }
        guard cff_writer_finish(h) >= 0 else { throw fail("finishing the video failed") }
        cff_writer_free(h)
        handle = nil
        try AtomicOutput.commit(temporaryPath, to: path)
        finished = true
        logger.debug("wrote \(framesWritten) frames to \(path)")
    }

    /// Frees the encoder and removes the temporary file; used on every error path.
    private func fail(_ what: String) -> MediaError {
        let reason = handle.map { String(cString: cff_writer_error($0)) } ?? ""
        if let handle { cff_writer_free(handle) }
        handle = nil
        AtomicOutput.discard(temporaryPath)
        finished = true
        return MediaError(file: path, reason.isEmpty ? what : "\(what) (\(reason))")
    }

    /// fps as a fraction: whole numbers exactly, NTSC rates as n·1000/1001, others to 1/1000.
    static func rational(_ fps: Double) -> (Int32, Int32) {
        if fps == fps.rounded() { return (Int32(fps), 1) }
        let ntsc = fps * 1001 / 1000
        if abs(ntsc - ntsc.rounded()) < 1e-3 { return (Int32(ntsc.rounded()) * 1000, 1001) }
        var num = Int((fps * 1000).rounded()), den = 1000
        var a = num, b = den
        while b != 0 { (a, b) = (b, a % b) }
        num /= a; den /= a
        return (Int32(num), Int32(den))
    }
}
