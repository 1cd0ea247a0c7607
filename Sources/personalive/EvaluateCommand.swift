// EvaluateCommand.swift — `personalive evaluate` (self- or cross-reenactment on a dataset split, or
// --compare of earlier evaluations) and `personalive evaluate videos` (any pair of videos): parses,
// checks the inputs before the slow model load, calls the Evaluation layer (REFERENCE.md §D).
import ArgumentParser
import Data
import Evaluation
import Foundation
import Inference
import Logging
import Models

/// Loads a model the way every inference command does (ModelOptions), from evaluate's optional flags.
func loadEvaluationModel(_ path: String, device: String, dtype: String, logger: Logger) throws -> PersonaLiveModel {
    try ModelOptions.parse(["--model", path, "--device", device, "--dtype", dtype]).load(logger: logger)
}

func checkLPIPSWeights(_ paths: [String], net: String) throws -> LPIPS.Network {
    for p in paths where !FileManager.default.fileExists(atPath: p) { throw CLIError("--lpips-weights \(p): file not found") }
    guard let n = LPIPS.Network(rawValue: net) else { throw ValidationError("--lpips-net must be vgg or alex (got '\(net)')") }
    return n
}

/// `evaluate` alone runs `evaluate dataset` (the default subcommand); `evaluate videos` scores a pair.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Evaluation: self-/cross-reenactment on a dataset, --compare, or any pair of videos.",
        subcommands: [EvaluateDatasetCommand.self, EvaluateVideosCommand.self],
        defaultSubcommand: EvaluateDatasetCommand.self)
}

struct EvaluateDatasetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataset",
        abstract: "Self-reenactment (or --cross) metrics of a model on a dataset split, or --compare of evaluation folders.",
        discussion: """
            Self-reenactment: per clip the first frame is the reference, the remaining frames drive and are the ground \
            truth, generated through the streaming engine. Metrics: L1, PSNR, SSIM, LPIPS and tLP (with --lpips-weights), \
            pose error, keypoint and motion-token distance (through the model's motion extractor/encoder), FPS and chunk latency.
            """)

    @Option(help: "A checkpoint run folder, one checkpoint-N folder, or a model.yaml.") var model: String?
    @Option(help: "The HDF5 dataset.") var dataset: String?
    @Option(help: "The split whose clips are evaluated.") var split: String = "val"
    @Option(help: "Evaluate at most this many clips of the split.") var clips: Int?
    @Option(help: "At most this many driving frames per clip (after the reference frame).") var maxFrames: Int?
    @Flag(help: "Cross-reenactment: clip i's first frame driven by clip i+1 (no ground truth).") var cross = false
    @Option(parsing: .upToNextOption, help: "LPIPS weights (the lpips package's vgg.pth and torchvision's VGG16, or one safetensors); without them LPIPS and tLP are reported as unavailable.")
    var lpipsWeights: [String] = []
    @Option(help: "LPIPS backbone of --lpips-weights: vgg or alex.") var lpipsNet: String = "vgg"
    @Option(parsing: .upToNextOption, help: "Evaluation folders to put in one table and one plot (no model needed).")
    var compare: [String] = []
    @Option(help: "A name for this evaluation in reports and comparisons (default: the --out folder's name).") var label: String?
    @Option(help: "The output folder (replaced only when the evaluation is complete).") var out: String
    @Option(help: "cpu, cuda or cuda:N.") var device: String = "cpu"
    @Option(help: "float32, float16 or bfloat16.") var dtype: String = "float32"
    @Option(help: "Seed of the stream's noise.") var seed: UInt64 = 42
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if !compare.isEmpty {
            guard model == nil, dataset == nil, !cross else { throw ValidationError("--compare takes evaluation folders only (no --model, --dataset, --cross)") }
            return
        }
        guard model != nil else { throw ValidationError("give --model (or --compare DIR…)") }
        guard dataset != nil else { throw ValidationError("give --dataset (the HDF5 file whose --split clips are evaluated)") }
        if let clips, clips <= 0 { throw ValidationError("--clips must be positive") }
        if let maxFrames, maxFrames <= 0 { throw ValidationError("--max-frames must be positive") }
    }

    func run() throws {
        let logger = try global.setUp(label: "evaluate")
        let command = CommandLine.arguments.joined(separator: " ")
        if !compare.isEmpty {
            let runs = try compare.map { try EvaluationSummary(directory: $0) }
            print(try Comparison.write(runs, command: command, to: out, logger: logger))
            return
        }
        guard let model, let dataset else { return }
        // Inputs first: a missing split or weight file fails before the model loads.
        var options = EvaluationOptions()
        options.split = split
        options.clips = clips
        options.maxFrames = maxFrames
        options.seed = seed
        _ = try Evaluator.clipIDs(try DatasetReader(path: dataset, logger: logger), options: options)
        let lpipsNetwork = try checkLPIPSWeights(lpipsWeights, net: lpipsNet)
        let loaded = try loadEvaluationModel(model, device: device, dtype: dtype, logger: logger)
        let perceptual = lpipsWeights.isEmpty ? nil : try PerceptualMetric(weights: lpipsWeights, network: lpipsNetwork, logger: logger)
        if perceptual == nil { logger.notice("no --lpips-weights: LPIPS and tLP are reported as unavailable") }
        let evaluator = Evaluator(model: loaded, perceptual: perceptual, logger: logger)
        let bar = ProgressBar(label: cross ? "cross-reenactment" : "self-reenactment")
        let progress: (Int, Int, String) -> Void = { done, total, id in bar.update(done: done, total: total, unit: "clips", note: id) }
        let clipResults = cross ? try evaluator.crossReenactment(dataset: dataset, options: options, progress: progress)
                                : try evaluator.selfReenactment(dataset: dataset, options: options, progress: progress)
        bar.finish()
        var unavailable = evaluator.unavailable(fullReference: !cross)
        var notes: [String] = []
        if cross {
            notes.append("cross-reenactment has no ground truth: pose error, keypoint and motion-token distance and tLP are measured against the driving frames; the identity score is a CLIP image-embedding cosine to the reference (a proxy, not ArcFace ID-SIM)")
            unavailable["id_sim"] = "ArcFace ID-SIM needs ArcFace weights, which this toolkit does not load; see identity_proxy"
        }
        var result = EvaluationResult(
            mode: cross ? "cross-reenactment" : "self-reenactment", label: label ?? (out as NSString).lastPathComponent, model: model,
            modelDigest: Evaluator.digest(of: loaded), command: command,
            inputs: ["dataset": dataset, "split": split, "device": device, "dtype": dtype, "seed": "\(seed)",
                     "lpips": perceptual.map { "\($0.network): \($0.weights.joined(separator: " + "))" } ?? "none"],
            clips: clipResults, unavailable: unavailable, notes: notes)
        result.configDigest = try Evaluator.configDigest(modelPath: model)
        try EvaluationReport.write(result, to: out, logger: logger)
        printSummary(result, out: out)
    }
}

func printSummary(_ r: EvaluationResult, out: String) {
    print("\(r.mode) of \(r.clips.count) clip(s), \(r.clips.map(\.frames).reduce(0, +)) frames → \(out)")
    for k in r.metricKeys {
        guard let i = MetricInfo.named(k), let v = r.overall(k) else { continue }
        print("  " + i.name.padding(toLength: 30, withPad: " ", startingAt: 0) + String(format: " %10.4f  ", v) + i.unit)
    }
    if let fps = r.fps { print("  " + "FPS".padding(toLength: 30, withPad: " ", startingAt: 0) + String(format: " %10.2f  frames/s", fps)) }
    for (k, why) in r.unavailable.sorted(by: { $0.key < $1.key }) { print("  \(k): unavailable (\(why))") }
}

struct EvaluateVideosCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "videos",
        abstract: "The same metrics on any pair of videos (e.g. another system's output against the ground truth).")

    @Option(help: "The generated video.") var pred: String
    @Option(help: "The ground-truth video.") var gt: String
    @Option(help: "The reference image (shown in the sample strip).") var reference: String?
    @Option(help: "A model whose motion extractor/encoder measure pose error, keypoint and motion-token distance.") var model: String?
    @Option(parsing: .upToNextOption, help: "LPIPS weights; without them LPIPS and tLP are reported as unavailable.")
    var lpipsWeights: [String] = []
    @Option(help: "LPIPS backbone of --lpips-weights: vgg or alex.") var lpipsNet: String = "vgg"
    @Flag(help: "Compare the first min(n_pred, n_gt) frames when the frame counts differ (default: refuse).") var truncate = false
    @Flag(help: "Resize the prediction (bicubic) to the ground truth's size when they differ (default: refuse).") var resize = false
    @Option(help: "At most this many frames of each video.") var maxFrames: Int?
    @Option(help: "A name for this evaluation (default: the --out folder's name).") var label: String?
    @Option(help: "The output folder.") var out: String
    @Option(help: "cpu, cuda or cuda:N.") var device: String = "cpu"
    @Option(help: "float32, float16 or bfloat16.") var dtype: String = "float32"
    @OptionGroup var global: GlobalOptions

    func run() throws {
        let logger = try global.setUp(label: "evaluate")
        for f in [pred, gt] + (reference.map { [$0] } ?? []) where !FileManager.default.fileExists(atPath: f) {
            throw CLIError("\(f): file not found")
        }
        let lpipsNetwork = try checkLPIPSWeights(lpipsWeights, net: lpipsNet)
        let loaded = try model.map { try loadEvaluationModel($0, device: device, dtype: dtype, logger: logger) }
        let perceptual = lpipsWeights.isEmpty ? nil : try PerceptualMetric(weights: lpipsWeights, network: lpipsNetwork, logger: logger)
        let evaluator = Evaluator(model: loaded, perceptual: perceptual, logger: logger)
        var options = Evaluator.VideoPairOptions()
        options.truncate = truncate
        options.resize = resize
        options.maxFrames = maxFrames
        options.reference = reference
        let (clip, notes) = try evaluator.videos(pred: pred, gt: gt, options: options)
        var inputs = ["pred": pred, "gt": gt, "lpips": perceptual.map { "\($0.network): \($0.weights.joined(separator: " + "))" } ?? "none"]
        if let reference { inputs["reference"] = reference }
        var result = EvaluationResult(
            mode: "video pair", label: label ?? (out as NSString).lastPathComponent, model: model,
            modelDigest: loaded.map(Evaluator.digest(of:)), command: CommandLine.arguments.joined(separator: " "), inputs: inputs,
            clips: [clip], unavailable: evaluator.unavailable(fullReference: true), notes: notes)
        result.configDigest = try model.map { try Evaluator.configDigest(modelPath: $0) }
        try EvaluationReport.write(result, to: out, logger: logger)
        printSummary(result, out: out)
    }
}
