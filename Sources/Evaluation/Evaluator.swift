// Evaluator.swift — the paper's evaluation protocols (REFERENCE.md §D) on our models:
// - self-reenactment: per clip of a dataset split, the first frame is the reference and the
//   remaining frames drive and are the ground truth, generated through the streaming engine
//   (Animator.animate(reference:frames:), the same path as `personalive animate`);
// - cross-reenactment: the reference of clip i driven by the frames of clip i+1 (no ground truth:
//   pose, keypoint and motion-token distance to the driver, tLP against the driver, and an identity
//   proxy to the reference, CLIP image-embedding cosine, named as a proxy);
// - a pair of videos (outputs of any system) scored by the same code.
import Data
import Foundation
import Inference
import Logging
import Media
import Models
import Torch

public struct EvaluationOptions {
    public var split = "val"
    public var clips: Int?
    /// Driving frames per clip (after the reference frame).
    public var maxFrames: Int?
    public var seed: UInt64 = 42
    /// Frames in each sample strip.
    public var stripFrames = 5
    public init() {}
}

public final class Evaluator {
    public let model: PersonaLiveModel?
    public let perceptual: PerceptualMetric?
    let logger: Logger

    public init(model: PersonaLiveModel?, perceptual: PerceptualMetric?, logger: Logger = Logger(label: "personalive.evaluate")) {
        self.model = model
        self.perceptual = perceptual
        self.logger = logger
    }

    /// A short digest (FNV-1a) of what was loaded: every module's source and the pipeline settings.
    public static func digest(of model: PersonaLiveModel) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = .sortedKeys
        let settings = (try? enc.encode(model.settings)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in (model.sources.joined(separator: "\n") + settings).utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return String(format: "%016llx", h)
    }

    /// The digest of the configuration a model came from: a checkpoint's `config_digest` (its
    /// trainer_state.json; for a run folder, the newest complete checkpoint's, the one `load` picks),
    /// or FNV-1a of a model.yaml's text. Returns the digest and the file it comes from.
    public static func configDigest(modelPath path: String) throws -> (digest: String, source: String) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw EvaluationError("\(path): not found") }
        if isDir.boolValue {
            let state = try CheckpointModules.latestCheckpoint(in: path).appendingPathComponent("trainer_state.json")
            guard let data = FileManager.default.contents(atPath: state.path),
                  let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let digest = obj["config_digest"] as? String else {
                throw EvaluationError("\(state.path): no \"config_digest\" string")
            }
            return (digest, state.path)
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw EvaluationError("\(path): unreadable") }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in data { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return (String(format: "%016llx", h), path)
    }

    /// The clips of `split` to evaluate, each with at least 2 frames; errors name the file and split.
    public static func clipIDs(_ reader: DatasetReader, options: EvaluationOptions) throws -> [String] {
        guard let ids = reader.splits[options.split] else {
            let have = reader.splits.keys.sorted()
            throw EvaluationError("\(reader.path): no '\(options.split)' split (the file has \(have.isEmpty ? "no splits" : have.joined(separator: ", "))); self-reenactment needs held-out clips")
        }
        guard !ids.isEmpty else { throw EvaluationError("\(reader.path): split '\(options.split)' is empty") }
        let usable = try ids.filter { try reader.info($0).frameCount >= 2 }
        guard !usable.isEmpty else { throw EvaluationError("\(reader.path): no clip of split '\(options.split)' has 2 frames (reference + driving)") }
        return Array(usable.prefix(options.clips ?? usable.count))
    }

    func requireModel() throws -> PersonaLiveModel {
        guard let model else { throw EvaluationError("this evaluation needs a model (--model)") }
        return model
    }

    /// Frames t0..<t1 of a clip at the model's size, (n, 3, S, S) in [-1, 1] on its device.
    func frames(_ reader: DatasetReader, _ id: String, _ range: Range<Int>, frontEnds: FrontEnds) throws -> Tensor {
        try frontEnds.frames(range.map { try reader.frame(id, $0) })
    }

    /// Generates a clip through the stream; returns frames (n, 3, S, S) in [0, 1] on the CPU, chunk times, total seconds.
    /// Every clip gets a fresh stream seeded with `seed`, so a clip's result does not depend on the clips before it.
    func generate(reference: Tensor, driving: Tensor, seed: UInt64) throws -> (Tensor, [Double], Double) {
        let model = try requireModel()
        let animator = Animator(pipeline: try StreamingPipeline(model: model, seed: seed, logger: logger), logger: logger)
        var chunks: [Double] = []
        let start = DispatchTime.now().uptimeNanoseconds
        let out = try animator.animate(reference: reference, frames: driving) { chunks.append($0) }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        guard out.count == driving.shape[0] else {
            throw EvaluationError("the stream emitted \(out.count) frames for \(driving.shape[0]) driving frames")
        }
        return (try Tensor.stack(out.map { try $0.image.to(.cpu).to(.float32) }, dim: 0), chunks, seconds)
    }

    /// Full-reference and motion metrics of generated frames against ground truth, both (n, 3, H, W) in [0, 1].
    public func pairMetrics(generated g: Tensor, truth y: Tensor, motion: Bool = true) throws -> [String: [Double?]] {
        var m: [String: [Double?]] = [:]
        m["l1"] = try ImageMetrics.l1(g, y)
        m["psnr"] = try ImageMetrics.psnr(g, y)
        m["ssim"] = try ImageMetrics.ssim(g, y)
        if let perceptual {
            m["lpips"] = try perceptual.distances(g, y)
            m["tlp"] = [nil] + (try perceptual.temporal(generated: g, truth: y))
        }
        m.merge(try temporalMetrics(generated: g, truth: y, l1: m["l1"] ?? [])) { $1 }
        if motion, let model { m.merge(try motionMetrics(g, y, model: model)) { $1 } }
        return m
    }

    /// Temporal consistency and drift of a clip (both (n, 3, H, W) in [0, 1]): the generated and the
    /// ground truth's mean frame-to-frame difference and the gap between them, from the second frame;
    /// the per-frame L1 split into the first and the last quarter of the frames (nil elsewhere), so
    /// that their means show whether the error grows along the stream.
    public func temporalMetrics(generated g: Tensor, truth y: Tensor, l1: [Double?]) throws -> [String: [Double?]] {
        let n = g.shape[0]
        guard n >= 2 else { return [:] }
        func diffs(_ x: Tensor) throws -> [Double] {
            let d = try (x.narrow(0, start: 1, length: n - 1) - x.narrow(0, start: 0, length: n - 1)).abs()
            return try d.reshape([n - 1, -1]).mean([1]).toArray(Float.self).map { Double($0) }
        }
        let dg = try diffs(g), dy = try diffs(y)
        var m: [String: [Double?]] = [:]
        m["frame_diff"] = [nil] + dg
        m["frame_diff_gt"] = [nil] + dy
        m["frame_diff_error"] = [nil] + zip(dg, dy).map { abs($0 - $1) }
        if l1.count == n, n >= 4 {
            let q = n / 4
            m["l1_first_quarter"] = (0..<n).map { $0 < q ? l1[$0] : nil }
            m["l1_last_quarter"] = (0..<n).map { $0 >= n - q ? l1[$0] : nil }
        }
        return m
    }

    func motionMetrics(_ g: Tensor, _ y: Tensor, model: PersonaLiveModel) throws -> [String: [Double?]] {
        let fe = FrontEnds(model: model)
        let a = try MotionMetrics.read(g, frontEnds: fe), b = try MotionMetrics.read(y, frontEnds: fe)
        return ["pose_error": try MotionMetrics.poseError(a, b), "keypoint_distance": try MotionMetrics.keypointDistance(a, b),
                "motion_distance": try MotionMetrics.motionDistance(a, b)]
    }

    /// Metrics that could not be computed, and why.
    public func unavailable(fullReference: Bool) -> [String: String] {
        var u: [String: String] = [:]
        if perceptual == nil {
            if fullReference { u["lpips"] = "no LPIPS weights given (--lpips-weights); not estimated" }
            u["tlp"] = "needs LPIPS: no LPIPS weights given (--lpips-weights); not estimated"
        }
        if model == nil {
            for k in ["pose_error", "keypoint_distance", "motion_distance"] { u[k] = "needs a model's motion extractor and encoder (--model)" }
        }
        return u
    }

    /// Self-reenactment on a dataset split.
    public func selfReenactment(dataset path: String, options: EvaluationOptions,
                                progress: (Int, Int, String) -> Void = { _, _, _ in }) throws -> [ClipResult] {
        let model = try requireModel()
        let reader = try DatasetReader(path: path, logger: logger)
        let ids = try Self.clipIDs(reader, options: options)
        let fe = FrontEnds(model: model)
        var results: [ClipResult] = []
        for (i, id) in ids.enumerated() {
            progress(i, ids.count, id)
            let count = try reader.info(id).frameCount
            let n = min(count - 1, options.maxFrames ?? (count - 1))
            let reference = try frames(reader, id, 0..<1, frontEnds: fe)
            let driving = try frames(reader, id, 1..<(1 + n), frontEnds: fe)
            let (g, chunks, seconds) = try generate(reference: reference, driving: driving, seed: options.seed)
            let y = try ((driving.to(.cpu).to(.float32) + 1) / 2).clamp(min: 0, max: 1)
            let ref01 = try ((reference.to(.cpu).to(.float32) + 1) / 2).clamp(min: 0, max: 1)
            let metrics = try pairMetrics(generated: g, truth: y)
            let strip = try SampleStrip.render(columns: [("reference", ref01), ("driving", y), ("generated", g), ("ground truth", y)],
                                               frames: n, samples: options.stripFrames, captions: Self.captions(metrics, frames: n))
            results.append(ClipResult(id: id, frames: n, perFrame: metrics, chunkSeconds: chunks, seconds: seconds, strip: strip))
            logger.info("\(id): \(n) frames, \(Self.summary(metrics))")
        }
        progress(ids.count, ids.count, "")
        return results
    }

    /// Cross-reenactment: clip i's first frame driven by clip (i+1)'s frames (from its second frame).
    public func crossReenactment(dataset path: String, options: EvaluationOptions,
                                 progress: (Int, Int, String) -> Void = { _, _, _ in }) throws -> [ClipResult] {
        let model = try requireModel()
        let reader = try DatasetReader(path: path, logger: logger)
        let ids = try Self.clipIDs(reader, options: options)
        guard ids.count >= 2 else {
            throw EvaluationError("\(path): cross-reenactment needs at least 2 clips in split '\(options.split)', found \(ids.count)")
        }
        let fe = FrontEnds(model: model)
        var results: [ClipResult] = []
        for (i, id) in ids.enumerated() {
            progress(i, ids.count, id)
            let driverID = ids[(i + 1) % ids.count]
            let count = try reader.info(driverID).frameCount
            let n = min(count - 1, options.maxFrames ?? (count - 1))
            let reference = try frames(reader, id, 0..<1, frontEnds: fe)
            let driving = try frames(reader, driverID, 1..<(1 + n), frontEnds: fe)
            let (g, chunks, seconds) = try generate(reference: reference, driving: driving, seed: options.seed)
            let d = try ((driving.to(.cpu).to(.float32) + 1) / 2).clamp(min: 0, max: 1)
            let ref01 = try ((reference.to(.cpu).to(.float32) + 1) / 2).clamp(min: 0, max: 1)
            var metrics = try motionMetrics(g, d, model: model)
            if let perceptual { metrics["tlp"] = [nil] + (try perceptual.temporal(generated: g, truth: d)) }
            metrics["identity_proxy"] = try identityProxy(g, reference: ref01, model: model)
            let strip = try SampleStrip.render(columns: [("reference", ref01), ("driving", d), ("generated", g)],
                                               frames: n, samples: options.stripFrames, captions: Self.captions(metrics, frames: n))
            results.append(ClipResult(id: id, driver: driverID, frames: n, perFrame: metrics, chunkSeconds: chunks, seconds: seconds,
                                      strip: strip))
            logger.info("\(id) driven by \(driverID): \(n) frames, \(Self.summary(metrics))")
        }
        progress(ids.count, ids.count, "")
        return results
    }

    /// Cosine similarity of CLIP image embeddings of each generated frame and the reference (a proxy
    /// for ArcFace identity similarity; CLIP also sees background and pose).
    func identityProxy(_ g: Tensor, reference: Tensor, model: PersonaLiveModel) throws -> [Double?] {
        try Torch.noGrad {
            func embed(_ x: Tensor) throws -> Tensor {
                let e = try model.imageEncoder(model.clipProcessor(x.to(model.device, model.dtype))).imageEmbeds.to(.cpu).to(.float64)
                return try e / e.square().sum([1], keepDim: true).sqrt()
            }
            let r = try embed(reference), e = try embed(g)
            return try (e * r).sum([1]).toArray(Double.self)
        }
    }

    /// Any pair of videos: `pred` scored against `gt` frame by frame. Frame counts and sizes must
    /// agree unless `align` / `resize` say how to make them.
    public struct VideoPairOptions {
        /// Compare the first min(n_pred, n_gt) frames instead of refusing different lengths.
        public var truncate = false
        /// Resize the prediction (bicubic) to the ground truth's size instead of refusing.
        public var resize = false
        public var maxFrames: Int?
        public var reference: String?
        public var stripFrames = 5
        public init() {}
    }

    public func videos(pred: String, gt: String, options: VideoPairOptions) throws -> (ClipResult, [String]) {
        var notes: [String] = []
        let pv = try VideoReader(path: pred, logger: logger), gv = try VideoReader(path: gt, logger: logger)
        if (pv.width, pv.height) != (gv.width, gv.height) {
            guard options.resize else {
                throw EvaluationError("\(pred) is \(pv.width)×\(pv.height) but \(gt) is \(gv.width)×\(gv.height): give --resize to resize the prediction (bicubic) to the ground truth's size")
            }
            notes.append("\(pred) resized (bicubic) from \(pv.width)×\(pv.height) to the ground truth's \(gv.width)×\(gv.height)")
        }
        var p = try pv.readAll(maxFrames: options.maxFrames), y = try gv.readAll(maxFrames: options.maxFrames)
        guard !p.isEmpty, !y.isEmpty else { throw EvaluationError("\(p.isEmpty ? pred : gt): no decodable frame") }
        if p.count != y.count {
            guard options.truncate else {
                throw EvaluationError("\(pred) has \(p.count) frames but \(gt) has \(y.count): give --truncate to compare the first \(min(p.count, y.count)) frames of both")
            }
            notes.append("frame counts differ (\(pred): \(p.count), \(gt): \(y.count)); the first \(min(p.count, y.count)) frames of each were compared, frame i with frame i")
            let n = min(p.count, y.count)
            (p, y) = (Array(p.prefix(n)), Array(y.prefix(n)))
        }
        if abs(pv.fps - gv.fps) > 1e-3 { notes.append("frame rates differ (\(pred): \(pv.fps) fps, \(gt): \(gv.fps) fps); frames were paired by index") }
        let g = try Tensor.stack(p.map { f in
            try (f.width == gv.width && f.height == gv.height ? f : f.resized(width: gv.width, height: gv.height, filter: .bicubic)).tensorCHW(.unit)
        }, dim: 0)
        let t = try Tensor.stack(y.map { try $0.tensorCHW(.unit) }, dim: 0)
        let metrics = try pairMetrics(generated: g, truth: t)
        var columns: [(String, Tensor)] = []
        if let reference = options.reference {
            let r = try ImageIO.read(reference, logger: logger).resized(width: gv.width, height: gv.height, filter: .bicubic)
            columns.append(("reference", try r.tensorCHW(.unit).unsqueeze(0)))
        }
        columns += [("generated", g), ("ground truth", t)]
        let strip = try SampleStrip.render(columns: columns, frames: g.shape[0], samples: options.stripFrames,
                                           captions: Self.captions(metrics, frames: g.shape[0]))
        let name = (pred as NSString).lastPathComponent
        return (ClipResult(id: name, frames: g.shape[0], perFrame: metrics, strip: strip), notes)
    }

    /// One line per frame for the sample strips: the frame's headline metrics.
    static func captions(_ m: [String: [Double?]], frames n: Int) -> [String] {
        let keys: [(String, String, String)] = [("l1", "L1", "%.3f"), ("ssim", "SSIM", "%.3f"), ("psnr", "PSNR", "%.1f dB"),
                                                ("lpips", "LPIPS", "%.3f"), ("pose_error", "pose", "%.1f°"),
                                                ("identity_proxy", "ID proxy", "%.3f")]
        return (0..<n).map { t in
            keys.compactMap { key, name, format -> String? in
                guard let v = m[key], t < v.count, let x = v[t] else { return nil }
                return x.isFinite ? "\(name) " + String(format: format, x) : "\(name) \(x > 0 ? "∞" : "−∞")"
            }.joined(separator: "  ")
        }
    }

    static func summary(_ m: [String: [Double?]]) -> String {
        MetricInfo.all.compactMap { info in
            guard let v = m[info.key], let x = EvaluationResult.mean(v) else { return nil }
            return "\(info.key) \(String(format: "%.4g", x))"
        }.joined(separator: ", ")
    }
}
