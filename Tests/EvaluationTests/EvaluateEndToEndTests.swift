// EvaluateEndToEndTests.swift — evaluation end to end on a tiny random PersonaLive model (a
// model.yaml naming a safetensors file per module, as InferenceTests writes it) and a small
// synthetic dataset: self- and cross-reenactment through the stream, metrics.json / report.md /
// plots / strips, the video-pair mode, and the errors for bad input (named, nothing left in --out).
import Data
import Foundation
import Testing
import Inference
import Media
import Models
import NN
import Torch
@testable import Evaluation

/// Configs/tiny/model.yaml with random weights, one safetensors file per module. Not seeded: no
/// check here depends on the values, and reseeding the process-wide generator would disturb suites
/// of other targets running in parallel.
func writeTinyModel(in dir: URL) throws -> String {
    let source = EvalPaths.packageRoot + "/Configs/tiny/model.yaml"
    return try PersonaLiveModel.random(modelYAML: source).writeModelFile(in: dir, architecture: source)
}

/// LPIPS with random weights (non-negative heads), saved as safetensors.
func writeRandomLPIPS(in dir: URL) throws -> String {
    let lpips = try LPIPS()
    for lin in lpips.lins { try lin.weight.copy_(lin.weight.abs()) }
    let path = dir.appendingPathComponent("lpips.safetensors").path
    try SafeTensors.write(lpips.stateDict(), to: path)
    return path
}

@Suite(.serialized) struct EvaluateEndToEndTests {
    @Test func selfAndCrossReenactmentWriteReports() throws {
        let dir = try EvalPaths.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try PersonaLiveModel.load(try writeTinyModel(in: dir))
        let dataset = dir.appendingPathComponent("synth.h5").path
        _ = try SyntheticPortraits.write(to: dataset, config: SynthConfig(clips: 4, frames: 10, size: 64, valFraction: 0.5))
        let evaluator = Evaluator(model: model, perceptual: try PerceptualMetric(weights: [try writeRandomLPIPS(in: dir)]))
        var options = EvaluationOptions()
        options.maxFrames = 6
        let clips = try evaluator.selfReenactment(dataset: dataset, options: options)
        #expect(clips.count == 2)
        for c in clips {
            #expect(c.frames == 6)
            for key in ["l1", "psnr", "ssim", "lpips", "tlp", "pose_error", "keypoint_distance", "motion_distance"] {
                let v = try #require(c.perFrame[key], "\(key) missing")
                #expect(v.count == 6, "\(key): \(v.count) values")
            }
            #expect(c.perFrame["tlp"]![0] == nil && c.perFrame["tlp"]![1] != nil)
            let l1 = c.perFrame["l1"]!.compactMap { $0 }
            #expect(l1.allSatisfy { $0 > 0 && $0 < 1 }, "\(l1)")
            #expect(!c.chunkSeconds.isEmpty && (c.seconds ?? 0) > 0)
        }
        // Each clip streams afresh from the seed: evaluating the first clip alone gives the same numbers.
        var one = options
        one.clips = 1
        let alone = try evaluator.selfReenactment(dataset: dataset, options: one)
        #expect(alone.count == 1 && alone[0].perFrame["l1"]! == clips[0].perFrame["l1"]!)
        // Clips come in the split's order.
        let reader = try DatasetReader(path: dataset)
        let id = try #require(reader.splits["val"]?.first)
        #expect(clips[0].id == id)

        let result = EvaluationResult(mode: "self-reenactment", label: "tiny", model: "m", modelDigest: Evaluator.digest(of: model),
                                      command: "test", inputs: ["dataset": dataset], clips: clips,
                                      unavailable: evaluator.unavailable(fullReference: true), notes: [])
        let out = dir.appendingPathComponent("eval").path
        try EvaluationReport.write(result, to: out, logger: .init(label: "test"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/metrics.json"))) as? [String: Any])
        let overall = try #require(json["overall"] as? [String: Any])
        let l1 = try #require(overall["l1"] as? Double)
        let all = clips.flatMap { $0.perFrame["l1"]!.compactMap { $0 } }
        #expect(abs(l1 - all.reduce(0, +) / Double(all.count)) < 1e-12)
        #expect((json["clips"] as? [[String: Any]])?.count == 2)
        #expect((json["timing"] as? [String: Any])?["fps"] as? Double ?? 0 > 0)
        let report = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
        #expect(report.contains("| L1 |") && report.contains("| SSIM |") && report.contains("| FPS |"))
        expectWellFormedTables(report)
        for f in ["plots/l1.png", "plots/ssim.png", "plots/tlp.png", "plots/clips_l1.png", "plots/chunk_latency.png", "strips/\(id).png"] {
            #expect(FileManager.default.fileExists(atPath: out + "/" + f), "\(f) missing")
        }
        let strip = try ImageIO.read(out + "/strips/\(id).png")
        #expect(strip.width > 4 * 96 && strip.height > 5 * 96)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).allSatisfy { !$0.contains(".partial-") })

        // Cross-reenactment: each reference driven by the next clip; no full-reference metrics.
        let cross = try evaluator.crossReenactment(dataset: dataset, options: options)
        #expect(cross.map(\.driver) == [cross[1].id, cross[0].id])
        for c in cross {
            #expect(c.perFrame["l1"] == nil && c.perFrame["ssim"] == nil)
            let idp = try #require(c.perFrame["identity_proxy"]).compactMap { $0 }
            #expect(idp.count == 6 && idp.allSatisfy { $0 >= -1 - 1e-9 && $0 <= 1 + 1e-9 })
            #expect(c.perFrame["pose_error"]?.count == 6)
        }

        // --compare reads both back into one table.
        let out2 = dir.appendingPathComponent("eval-cross").path
        try EvaluationReport.write(EvaluationResult(mode: "cross-reenactment", label: "tiny-cross", model: "m", modelDigest: nil, command: "test",
                                                    inputs: [:], clips: cross, unavailable: [:], notes: []), to: out2, logger: .init(label: "test"))
        let cmp = dir.appendingPathComponent("compare").path
        try Comparison.write([try EvaluationSummary(directory: out), try EvaluationSummary(directory: out2)], command: "test", to: cmp,
                             logger: .init(label: "test"))
        let table = try String(contentsOfFile: cmp + "/report.md", encoding: .utf8)
        #expect(table.contains("| tiny | self-reenactment |") && table.contains("| tiny-cross | cross-reenactment |"))
        #expect(FileManager.default.fileExists(atPath: cmp + "/comparison.png"))
        expectWellFormedTables(table)
    }

    /// Every row of each Markdown table has as many cells as its header (units such as "mean |Δ|"
    /// must not split a cell): cells are split at `|` not preceded by a backslash.
    func expectWellFormedTables(_ markdown: String) {
        func cells(_ line: Substring) -> Int {
            var n = 0, previous: Character = " "
            for ch in line { if ch == "|" && previous != "\\" { n += 1 }; previous = ch }
            return n - 1
        }
        var columns: Int?
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            guard line.hasPrefix("|") else { columns = nil; continue }
            if let c = columns { #expect(cells(line) == c, "row with \(cells(line)) cells under a \(c)-column header: \(line)") }
            else { columns = cells(line) }
        }
    }

    @Test func badInputIsNamedAndNothingIsWritten() throws {
        let dir = try EvalPaths.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let dataset = dir.appendingPathComponent("synth.h5").path
        _ = try SyntheticPortraits.write(to: dataset, config: SynthConfig(clips: 2, frames: 4, size: 32, valFraction: 0.5))
        var options = EvaluationOptions()
        options.split = "test"
        let e = try #require(throws: EvaluationError.self) { try Evaluator.clipIDs(DatasetReader(path: dataset), options: options) }
        #expect(e.description.contains(dataset) && e.description.contains("no 'test' split") && e.description.contains("train, val"))

        // A failure while writing leaves neither --out nor a temporary folder.
        let out = dir.appendingPathComponent("out").path
        #expect(throws: EvaluationError.self) {
            try OutputFolder.write(out) { d in
                try Data("x".utf8).write(to: d.appendingPathComponent("metrics.json"))
                throw EvaluationError("interrupted")
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).allSatisfy { !$0.hasPrefix("out") && !$0.hasPrefix(".out") })

        // Videos of different lengths or sizes: refused with both named, or aligned when asked (and noted).
        let media = try #require(EvalPaths.media, "shared media folder not found")
        let frames = try VideoReader(path: media + "/liveportrait/d0.mp4").readAll(maxFrames: 8).map {
            try $0.resized(width: 48, height: 48, filter: .bicubic)
        }
        func video(_ name: String, _ fs: [RGBImage]) throws -> String {
            let p = dir.appendingPathComponent(name).path
            let w = try VideoWriter(path: p, width: fs[0].width, height: fs[0].height, options: .init(fps: 25))
            for f in fs { try w.write(f) }
            try w.finish()
            return p
        }
        let gt = try video("gt.mp4", frames), short = try video("short.mp4", Array(frames.prefix(6)))
        let big = try video("big.mp4", try frames.map { try $0.resized(width: 64, height: 64, filter: .bicubic) })
        let evaluator = Evaluator(model: nil, perceptual: nil)
        let counts = try #require(throws: EvaluationError.self) { try evaluator.videos(pred: short, gt: gt, options: .init()) }
        #expect(counts.description.contains("6 frames") && counts.description.contains("has 8") && counts.description.contains("--truncate"))
        var opts = Evaluator.VideoPairOptions()
        opts.truncate = true
        let (clip, notes) = try evaluator.videos(pred: short, gt: gt, options: opts)
        #expect(clip.frames == 6 && notes.contains { $0.contains("first 6 frames") })
        #expect(clip.perFrame["pose_error"] == nil && clip.perFrame["lpips"] == nil)
        #expect(evaluator.unavailable(fullReference: true)["lpips"]?.contains("not estimated") == true)
        let sizes = try #require(throws: EvaluationError.self) { try evaluator.videos(pred: big, gt: gt, options: .init()) }
        #expect(sizes.description.contains("64×64") && sizes.description.contains("48×48") && sizes.description.contains("--resize"))
        // A video scored against itself: L1 0, SSIM 1, PSNR ∞.
        let (same, _) = try evaluator.videos(pred: gt, gt: gt, options: .init())
        #expect(same.perFrame["l1"]!.allSatisfy { $0 == 0 } && same.perFrame["ssim"]!.allSatisfy { abs($0! - 1) < 1e-12 })
        #expect(same.perFrame["psnr"]!.allSatisfy { $0 == .infinity })
    }

    @Test func configDigestComesFromTheCheckpointOrTheYAML() throws {
        let dir = try EvalPaths.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        for (step, digest) in [(10, "aaaa"), (20, "bbbb")] {
            let c = run.appendingPathComponent("checkpoint-\(step)")
            try FileManager.default.createDirectory(at: c, withIntermediateDirectories: true)
            try Data("{\"step\": \(step), \"config_digest\": \"\(digest)\"}".utf8).write(to: c.appendingPathComponent("trainer_state.json"))
        }
        #expect(try Evaluator.configDigest(modelPath: run.path).digest == "bbbb")
        #expect(try Evaluator.configDigest(modelPath: run.path + "/checkpoint-10").digest == "aaaa")
        let yaml = dir.appendingPathComponent("m.yaml")
        try Data("a".utf8).write(to: yaml)
        // FNV-1a 64 of "a".
        #expect(try Evaluator.configDigest(modelPath: yaml.path).digest == "af63dc4c8601ec8c")
        #expect(throws: EvaluationError.self) { try Evaluator.configDigest(modelPath: dir.appendingPathComponent("none").path) }
    }

    @Test func modelFolderMissingAModuleIsNamed() throws {
        let dir = try EvalPaths.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let yaml = try writeTinyModel(in: dir)
        try FileManager.default.removeItem(at: dir.appendingPathComponent("pose_guider.safetensors"))
        let e = try #require(throws: (any Error).self) { try PersonaLiveModel.load(yaml) }
        #expect("\(e)".contains("pose_guider"), "\(e)")
    }
}
