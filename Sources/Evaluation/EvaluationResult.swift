// EvaluationResult.swift — what an evaluation measured: per frame, per clip (mean over its frames)
// and overall (mean over every frame of every clip), with the metrics that could not be computed
// and why (LPIPS without weights is "unavailable", never estimated). metrics.json is this, encoded.
import Foundation
import Media

/// One metric: its key in metrics.json, how a reader should read it.
public struct MetricInfo: Sendable {
    public let key: String
    public let name: String
    public let unit: String
    public let higherIsBetter: Bool
    public let meaning: String

    public static let all: [MetricInfo] = [
        .init(key: "l1", name: "L1", unit: "mean |Δ|, pixels 0–1", higherIsBetter: false,
              meaning: "mean absolute error to the ground truth"),
        .init(key: "psnr", name: "PSNR", unit: "dB", higherIsBetter: true, meaning: "10·log10(1/MSE), data range 1 (skimage)"),
        .init(key: "ssim", name: "SSIM", unit: "0–1", higherIsBetter: true,
              meaning: "Gaussian window 11, σ 1.5, population covariance, per channel then averaged (skimage)"),
        .init(key: "lpips", name: "LPIPS", unit: "lpips 0.1 distance", higherIsBetter: false,
              meaning: "perceptual distance to the ground truth"),
        .init(key: "tlp", name: "tLP", unit: "|ΔLPIPS| of frame pairs", higherIsBetter: false,
              meaning: "TecoGAN temporal LPIPS: |LPIPS(g[t-1], g[t]) − LPIPS(y[t-1], y[t])|, from the second frame"),
        .init(key: "frame_diff", name: "frame-to-frame difference", unit: "mean |Δ|, pixels 0–1", higherIsBetter: false,
              meaning: "mean |g[t] − g[t−1]| of the generated frames, from the second frame (flicker and motion)"),
        .init(key: "frame_diff_gt", name: "ground truth's frame-to-frame difference", unit: "mean |Δ|, pixels 0–1",
              higherIsBetter: false, meaning: "mean |y[t] − y[t−1]| of the ground truth, from the second frame"),
        .init(key: "frame_diff_error", name: "temporal difference error", unit: "|Δ| of mean |Δ|, pixels 0–1",
              higherIsBetter: false,
              meaning: "|mean|g[t] − g[t−1]| − mean|y[t] − y[t−1]||: tLP's form on pixels (available without LPIPS weights)"),
        .init(key: "l1_first_quarter", name: "L1, first quarter", unit: "mean |Δ|, pixels 0–1", higherIsBetter: false,
              meaning: "L1 to the ground truth over the first quarter of each clip's frames (drift: against the last quarter)"),
        .init(key: "l1_last_quarter", name: "L1, last quarter", unit: "mean |Δ|, pixels 0–1", higherIsBetter: false,
              meaning: "L1 to the ground truth over the last quarter of each clip's frames (drift: against the first quarter)"),
        .init(key: "pose_error", name: "pose error", unit: "degrees", higherIsBetter: false,
              meaning: "mean |Δ| of pitch, yaw, roll read by the model's motion extractor (APD analogue)"),
        .init(key: "keypoint_distance", name: "keypoint distance", unit: "mean distance, frame width 2", higherIsBetter: false,
              meaning: "mean Euclidean distance of the 21 transformed keypoints of the motion extractor"),
        .init(key: "motion_distance", name: "motion-token distance", unit: "mean |Δ| of motion tokens", higherIsBetter: false,
              meaning: "mean L1 between the motion encoder's tokens of the two faces (AED analogue)"),
        .init(key: "identity_proxy", name: "identity proxy (CLIP cosine)", unit: "cosine, −1–1", higherIsBetter: true,
              meaning: "cosine of CLIP image embeddings of generated frame and reference: a proxy, not ArcFace ID-SIM"),
    ]

    public static func named(_ key: String) -> MetricInfo? { all.first { $0.key == key } }
}

public struct ClipResult {
    public var id: String
    /// What drove the clip (cross-reenactment: the driving clip's id).
    public var driver: String?
    public var frames: Int
    /// metric key → value per frame (nil where it is not defined, e.g. tLP of the first frame).
    public var perFrame: [String: [Double?]]
    /// Seconds per chunk (front-ends + one stream call), and the whole clip's generation time.
    public var chunkSeconds: [Double]
    public var seconds: Double?
    /// reference | driving | generated | ground truth at a few frames.
    public var strip: RGBImage?

    public init(id: String, driver: String? = nil, frames: Int, perFrame: [String: [Double?]], chunkSeconds: [Double] = [],
                seconds: Double? = nil, strip: RGBImage? = nil) {
        (self.id, self.driver, self.frames, self.perFrame, self.chunkSeconds, self.seconds, self.strip) =
            (id, driver, frames, perFrame, chunkSeconds, seconds, strip)
    }

    /// Mean over the frames where the metric is defined and finite (PSNR of identical frames is +∞
    /// and is left out; `infiniteFrames` counts them).
    public func mean(_ key: String) -> Double? { EvaluationResult.mean(perFrame[key] ?? []) }
}

public struct EvaluationResult {
    public var mode: String
    public var label: String
    public var model: String?
    public var modelDigest: String?
    /// The model's config digest and the file it was read from (Evaluator.configDigest).
    public var configDigest: (digest: String, source: String)?
    public var command: String
    public var inputs: [String: String]
    public var clips: [ClipResult]
    /// metric key → why it was not computed.
    public var unavailable: [String: String]
    /// Notes a reader needs (alignment of videos of different lengths, resizing, proxies).
    public var notes: [String]

    public init(mode: String, label: String, model: String?, modelDigest: String?, command: String, inputs: [String: String],
                clips: [ClipResult], unavailable: [String: String], notes: [String]) {
        (self.mode, self.label, self.model, self.modelDigest, self.command, self.inputs, self.clips, self.unavailable, self.notes) =
            (mode, label, model, modelDigest, command, inputs, clips, unavailable, notes)
    }

    /// The metrics measured, in the table's order.
    public var metricKeys: [String] {
        MetricInfo.all.map(\.key).filter { k in clips.contains { $0.perFrame[k] != nil } }
    }

    static func mean(_ xs: [Double?]) -> Double? {
        let v = xs.compactMap { $0 }.filter(\.isFinite)
        return v.isEmpty ? nil : v.reduce(0, +) / Double(v.count)
    }

    /// Mean over every frame of every clip.
    public func overall(_ key: String) -> Double? { Self.mean(clips.flatMap { $0.perFrame[key] ?? [] }) }

    public var allChunkSeconds: [Double] { clips.flatMap(\.chunkSeconds) }

    /// Generated frames per second over every clip (frames / generation time), when timed.
    public var fps: Double? {
        let timed = clips.filter { $0.seconds != nil }
        guard !timed.isEmpty else { return nil }
        let s = timed.compactMap(\.seconds).reduce(0, +)
        return s > 0 ? Double(timed.map(\.frames).reduce(0, +)) / s : nil
    }

    static func median(_ xs: [Double]) -> Double? {
        guard !xs.isEmpty else { return nil }
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func percentile(_ xs: [Double], _ p: Double) -> Double? {
        guard !xs.isEmpty else { return nil }
        let s = xs.sorted()
        return s[min(s.count - 1, Int((p / 100 * Double(s.count - 1)).rounded()))]
    }

    /// metrics.json as a JSON object.
    public func json() -> [String: Any] {
        func num(_ v: Double?) -> Any { v.map { $0.isFinite ? $0 as Any : ($0 > 0 ? "inf" : "-inf") as Any } ?? NSNull() }
        var overallObj: [String: Any] = [:]
        for k in metricKeys { overallObj[k] = num(overall(k)) }
        var timing: [String: Any] = [:]
        let chunks = allChunkSeconds
        if !chunks.isEmpty {
            timing = ["fps": num(fps), "chunk_seconds_median": num(Self.median(chunks)), "chunk_seconds_p95": num(Self.percentile(chunks, 95)),
                      "chunk_seconds_mean": num(chunks.reduce(0, +) / Double(chunks.count)), "chunks": chunks.count]
        }
        let clipObjs: [[String: Any]] = clips.map { c in
            var summary: [String: Any] = [:]
            var perFrame: [String: Any] = [:]
            for k in metricKeys {
                guard let v = c.perFrame[k] else { continue }
                summary[k] = num(c.mean(k))
                perFrame[k] = v.map(num)
            }
            var o: [String: Any] = ["id": c.id, "frames": c.frames, "mean": summary, "per_frame": perFrame]
            if let d = c.driver { o["driver"] = d }
            if !c.chunkSeconds.isEmpty { o["chunk_seconds"] = c.chunkSeconds }
            if let s = c.seconds { o["seconds"] = s; o["fps"] = Double(c.frames) / max(s, 1e-12) }
            return o
        }
        var units: [String: Any] = [:]
        for k in metricKeys { if let m = MetricInfo.named(k) { units[k] = ["name": m.name, "unit": m.unit, "higher_is_better": m.higherIsBetter, "meaning": m.meaning] } }
        return [
            "format": "personalive-evaluation", "version": 1, "mode": mode, "label": label,
            "model": model as Any? ?? NSNull(), "model_digest": modelDigest as Any? ?? NSNull(), "command": command,
            "config_digest": configDigest.map { ["digest": $0.digest, "source": $0.source] as Any } ?? NSNull(),
            "inputs": inputs, "metrics": units, "overall": overallObj, "timing": timing, "unavailable": unavailable,
            "notes": notes, "clips": clipObjs,
        ]
    }
}
