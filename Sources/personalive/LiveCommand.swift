// LiveCommand.swift — `personalive live`: live mode over Inference's LiveSession (sources and sinks
// chosen from the --input / --output arguments).
import ArgumentParser
import Foundation
import Inference
import Logging
import Media

struct LiveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "live",
        abstract: "Animate a portrait live from a camera, a video file (at its own rate) or raw RGB on stdin.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "The reference portrait (PNG or JPEG).") var reference: String
    @Option(help: "/dev/videoN (a V4L2 camera), a video file (played at its frame rate), or - (raw RGB24 on stdin, with --size).")
    var input: String
    @Option(help: "Frame size of raw input, WxH.") var size: String?
    @Option(help: "A video file (.mp4, .mkv, .mov) or - / a file of raw RGB24 frames (S×S, S the model's size).") var output: String
    @Option(help: "When generation falls behind: drop the newest frame, the oldest queued one, or none (the source waits).")
    var drop: String = "oldest"
    @Option(help: "Frames the input queue holds (at least one chunk).") var queue: Int = 8
    @Option(help: "Frame rate of a video output (default: the input file's, else 25).") var fps: Double?
    @OptionGroup var global: GlobalOptions

    var rawSize: (Int, Int)? {
        guard let size else { return nil }
        let p = size.lowercased().split(separator: "x").compactMap { Int($0) }
        return p.count == 2 && p[0] > 0 && p[1] > 0 ? (p[0], p[1]) : nil
    }
    var videoOutput: Bool { [".mp4", ".mkv", ".mov"].contains { output.lowercased().hasSuffix($0) } }

    func validate() throws {
        guard DropPolicy(rawValue: drop) != nil else { throw ValidationError("--drop must be newest, oldest or none (got '\(drop)')") }
        if input == "-" {
            guard size != nil else { throw ValidationError("raw input on stdin (--input -) needs --size WxH") }
            guard rawSize != nil else { throw ValidationError("--size must be WxH with positive numbers (got '\(size!)')") }
        } else if size != nil {
            throw ValidationError("--size goes with raw input (--input -)")
        }
        if let fps, fps <= 0 { throw ValidationError("--fps must be positive") }
    }

    func run() throws {
        let logger = try global.setUp(label: "live")
        let image = try ImageIO.read(reference, logger: logger)
        let source: LiveSource
        var sourceFPS: Double?
        if input == "-" {
            let (w, h) = rawSize!
            source = RawLiveSource(handle: .standardInput, width: w, height: h)
        } else if input.hasPrefix("/dev/video") {
            source = try VideoLiveSource(path: input, device: "v4l2", logger: logger)
        } else {
            let s = try VideoLiveSource(path: input, logger: logger)
            sourceFPS = s.reader.fps > 0 ? s.reader.fps : nil
            source = s
        }
        let model = try modelOptions.load(logger: logger)
        let pipeline = try StreamingPipeline(model: model, seed: modelOptions.seed, logger: logger)
        let s = model.settings.image_size
        let sink: LiveSink
        if videoOutput {
            sink = try VideoLiveSink(path: output, size: s, fps: fps ?? sourceFPS ?? 25, logger: logger)
        } else if output == "-" {
            sink = RawLiveSink(handle: .standardOutput)
        } else {
            sink = try RawLiveSink(path: output)
        }
        let session = try LiveSession(pipeline: pipeline, policy: DropPolicy(rawValue: drop)!, queueCapacity: queue, logger: logger)
        logger.info("live: \(source.description) → \(output) (\(s)x\(s)\(videoOutput ? "" : " raw RGB24")), --drop \(drop), queue \(queue)")
        let err = FileHandle.standardError
        let summary = try session.run(reference: image, source: source, sink: sink) { r in
            let lat = r.latencies.isEmpty ? "  (warm-up)" : String(format: "%7.1f ms", 1000 * r.latencies.max()!)
            err.write(Data(String(format: "chunk %4d: latency %@, model %6.1f ms, %5.1f FPS, queue %2d, dropped %d\n",
                                  r.chunk, lat, 1000 * r.seconds, r.fps, r.queueDepth, r.dropped).utf8))
        }
        err.write(Data(String(format: "live: %d frames in, %d out, %d dropped (--drop %@); latency median %.1f ms, p95 %.1f ms; %.1f FPS over %.1f s\n",
                              summary.framesIn, summary.framesOut, summary.dropped, drop, 1000 * summary.medianLatency,
                              1000 * summary.p95Latency, summary.fps, summary.seconds).utf8))
    }
}
