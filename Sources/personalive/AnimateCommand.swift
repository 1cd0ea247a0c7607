// AnimateCommand.swift — `personalive animate` and `personalive pose extract`: a portrait driven by
// a video or by pose data through the Inference layer's streaming pipeline (inference_offline.py /
// inference_online.py of the reference, REFERENCE.md §A).
import ArgumentParser
import Foundation
import Inference
import Logging
import Media
import Torch

/// --model, --device, --dtype, --seed: how every inference command gets its networks.

struct AnimateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "animate",
        abstract: "Animate a portrait with a driving video or pose data (streaming pipeline, any length, constant memory).")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "The reference portrait (PNG or JPEG).") var reference: String
    @Option(help: "The driving video.") var driving: String?
    @Option(help: "Pose data (JSON written by `personalive pose extract`) instead of a driving video.") var pose: String?
    @Option(help: "Motion tokens (safetensors from `pose extract --motion`) for --pose; without it the reference's expression stays.")
    var motion: String?
    @Option(help: "The output video (.mp4).") var out: String
    @Flag(help: "Write reference | driving | keypoints | generated side by side.") var grid = false
    @Option(help: "Animate at most this many driving frames.") var maxFrames: Int?
    @Flag(help: "Also write the 12 transition frames of the warm-up (the driving audio is then not copied).") var keepWarmup = false
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        guard (driving == nil) != (pose == nil) else { throw ValidationError("give exactly one of --driving and --pose") }
        if motion != nil && pose == nil { throw ValidationError("--motion goes with --pose") }
        if let maxFrames, maxFrames <= 0 { throw ValidationError("--max-frames must be positive") }
        guard out.lowercased().hasSuffix(".mp4") || out.lowercased().hasSuffix(".mkv") || out.lowercased().hasSuffix(".mov") else {
            throw ValidationError("--out must be a video file (.mp4, .mkv or .mov), got \(out)")
        }
    }

    func run() throws {
        let logger = try global.setUp(label: "animate")
        // Inputs are read before the (slow) model load, so a bad path fails at once.
        let image = try ImageIO.read(reference, logger: logger)
        let poseData = try pose.map { try PoseData.read($0) }
        let tokens = try motion.map { path -> Tensor in
            let file = try SafeTensorsFile(path: path)
            guard file.keys.contains("motion") else { throw CLIError("\(path): no 'motion' tensor (expected `pose extract --motion` output)") }
            let t = try file.tensor("motion")
            if let poseData, t.dim != 3 || t.shape[0] != poseData.frames.count {
                throw CLIError("\(path): motion is \(t.shape), expected (\(poseData.frames.count), tokens, dim): one row per pose frame")
            }
            return t
        }
        if let driving { _ = try VideoReader(path: driving, logger: logger) }
        let model = try modelOptions.load(logger: logger)
        if let tokens {
            let want = [model.motionEncoder.config.tokens, model.motionEncoder.config.out_ch]
            guard Array(tokens.shape.dropFirst()) == want else {
                throw CLIError("\(motion!): motion rows are \(Array(tokens.shape.dropFirst())), this model's motion encoder gives \(want)")
            }
        }
        let pipeline = try StreamingPipeline(model: model, seed: modelOptions.seed, logger: logger)
        let animator = Animator(pipeline: pipeline, logger: logger)
        var options = AnimationOptions()
        options.maxFrames = maxFrames
        options.keepWarmup = keepWarmup
        options.grid = grid
        let bar = ProgressBar(label: "animate")
        let started = Date()
        let report: (Int, Int?) -> Void = { done, total in
            let fps = Double(done) / max(1e-9, Date().timeIntervalSince(started))
            bar.update(done: done, total: total ?? done, unit: "frames", note: String(format: "%.1f FPS", fps))
        }
        let summary: AnimationSummary
        if let driving {
            summary = try animator.animate(reference: image, drivingVideo: driving, output: out, options: options, progress: report)
        } else {
            summary = try animator.animate(reference: image, pose: poseData!, motion: tokens, output: out, options: options,
                                           progress: report)
        }
        bar.finish()
        print(String(format: "wrote %@: %d frames at %g fps%@%@, %.1f s (%.2f frames/s), %d keyframes",
                     out, summary.frames, summary.fps, summary.warmupFrames > 0 ? " (+\(summary.warmupFrames) warm-up)" : "",
                     summary.hasAudio ? ", driving audio copied" : "", summary.seconds,
                     Double(summary.frames + summary.warmupFrames) / max(summary.seconds, 1e-9), summary.keyframes))
    }
}

struct PoseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pose", abstract: "Head-pose data for driving by pose.",
                                                    subcommands: [PoseExtractCommand.self])
}

struct PoseExtractCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract",
        abstract: "Per-frame head pose (and optionally motion tokens) of a video, as `animate --driving` computes them.")

    @Argument(help: "The driving video.") var video: String
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "The pose JSON to write.") var out: String
    @Option(help: "Also write each frame's motion-encoder tokens to this safetensors file.") var motion: String?
    @Option(help: "At most this many frames.") var maxFrames: Int?
    @OptionGroup var global: GlobalOptions

    func run() throws {
        let logger = try global.setUp(label: "pose")
        _ = try VideoReader(path: video, logger: logger)
        let model = try modelOptions.load(logger: logger)
        let bar = ProgressBar(label: "pose extract")
        let (data, tokens) = try Animator.extractPose(video: video, frontEnds: FrontEnds(model: model),
                                                      chunkFrames: model.settings.stream.temporal_window_size,
                                                      maxFrames: maxFrames, logger: logger) { done in
            bar.update(done: done, total: max(done, maxFrames ?? done), unit: "frames")
        }
        bar.finish()
        try data.write(out)
        if let motion { try SafeTensors.write([("motion", tokens)], metadata: ["source": video], to: motion) }
        print("wrote \(out): \(data.frames.count) frames at \(data.fps) fps" + (motion.map { ", motion tokens in \($0)" } ?? ""))
    }
}
