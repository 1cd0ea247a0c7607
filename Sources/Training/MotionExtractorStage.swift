// MotionExtractorStage.swift — trains the tiny LivePortrait MotionExtractor of the embedded
// default on the synthetic ground truth (the pretrained motion_extractor.pth cannot be
// downloaded): pitch/yaw/roll bins with cross-entropy plus expected-angle regression, translation,
// scale and the canonical keypoints.
import Data
import Foundation
import Inference
import Logging
import Models
import NN
import Torch

public struct MotionExtractorStageSection: Codable, Sendable {
    public var image_size: Int = 64
    /// Weight of the expected-angle regression (degrees², so small) next to the bin cross-entropy.
    public var angle_weight: Double = 0.01
    public var kp_weight: Double = 10
    public var t_weight: Double = 10
    public var scale_weight: Double = 10
    enum K: String, CodingKey, CaseIterable { case image_size, angle_weight, kp_weight, t_weight, scale_weight }
    public init() {}
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: K.self)
        image_size = try c.value(.image_size, default: 64)
        angle_weight = try c.value(.angle_weight, default: 0.01)
        kp_weight = try c.value(.kp_weight, default: 10)
        t_weight = try c.value(.t_weight, default: 10)
        scale_weight = try c.value(.scale_weight, default: 10)
    }
}

public final class MotionExtractorStage: PairFedStage, TrainingStage {
    public let extractor: MotionExtractor
    let section: MotionExtractorStageSection

    public init(config: TrainingConfig, logger: Logger) throws {
        let precision = try Precision(solver: config.solver, logger: logger)
        let section = try ConfigLoader.section(MotionExtractorStageSection.self, config.stageSection, name: "motion_extractor",
                                               file: config.sourcePath)
        self.section = section
        let meConfig = try ConfigLoader.section(MotionExtractor.Config.self, config.model["motion_extractor"],
                                                name: "model.motion_extractor", file: config.sourcePath)
        extractor = try MotionExtractor(meConfig)
        try precision.placeTrained(extractor)
        let ds = try DatasetReader(path: config.data.dataset, logger: logger)
        guard ds.clips.allSatisfy({ $0.hasPose && $0.hasKeypoints }) else {
            throw TrainingError.invalid("\(config.data.dataset): the motion-extractor stage needs ground-truth "
                                        + "pose and keypoints in every clip (dataset synth writes them)")
        }
        super.init(config: config, precision: precision,
                   feeds: try stageFeeds(config, dataset: ds, imageSize: section.image_size,
                                         valBatch: max(8, config.validation.num_samples), device: precision.device))
    }

    public var savedModules: [(String, Module)] { [("motion_extractor", extractor)] }
    public var trainableParameters: [(String, Tensor)] {
        extractor.namedParameters().map { ("motion_extractor.\($0.0)", $0.1) }
    }

    var numBins: Int { extractor.config.num_bins }
    /// Bin whose centre (idx·3 − 1.5·(bins−1)) is nearest to each angle.
    func bins(_ degrees: Tensor) throws -> Tensor {
        try ((degrees + 1.5 * Double(numBins - 1)) / 3).round().clamp(min: 0, max: Double(numBins - 1)).to(.int64)
    }

    public func losses(sample: Int, generator: Generator) throws -> [String: Tensor] {
        let b = try feed.batch(sample / batchSize)
        guard let pose = b.targetPose, let kpGT = b.targetKeypoints else {
            throw TrainingError.invalid("batch lacks ground-truth pose/keypoints")
        }
        let out = try extractor.detector(b.motionInput)
        var ce: Tensor?, reg: Tensor?
        for (i, logits) in [out.pitch, out.yaw, out.roll].enumerated() {
            let gt = try pose.select(1, i)
            let c = try F.crossEntropy(logits, bins(gt))
            let r = try F.mseLoss(Keypoints.degrees(logits, numBins: numBins, idx: extractor.idx_tensor), gt)
            ce = try ce.map { try $0 + c } ?? c
            reg = try reg.map { try $0 + r } ?? r
        }
        let t = try F.mseLoss(out.t, pose.narrow(1, start: 3, length: 3))
        let scale = try F.mseLoss(out.scale, pose.narrow(1, start: 6, length: 1))
        let kp = try F.mseLoss(out.kp.reshape(kpGT.shape), kpGT)
        let loss = try ce! + reg! * section.angle_weight + t * section.t_weight + scale * section.scale_weight
            + kp * section.kp_weight
        return ["loss": loss, "bins_ce": ce!, "angle_mse": reg!, "t_mse": t, "scale_mse": scale, "kp_mse": kp]
    }

    /// Mean absolute angle error in degrees over pitch, yaw and roll of val frames.
    public func validate(step: Int, directory: URL, logger: Logger) throws -> [String: Double] {
        let b = try valFeed.batch(0)
        guard let pose = b.targetPose, let kpGT = b.targetKeypoints else { return [:] }
        let out = try extractor.detector(b.motionInput)
        var errors: [Double] = []
        for (i, logits) in [out.pitch, out.yaw, out.roll].enumerated() {
            let deg = try Keypoints.degrees(logits, numBins: numBins, idx: extractor.idx_tensor)
            errors.append(try (deg - pose.select(1, i)).abs().mean().item())
        }
        let kpErr = try (out.kp.reshape(kpGT.shape) - kpGT).abs().mean().item()
        let summary = ["angle_error_deg": errors.reduce(0, +) / 3, "pitch_error_deg": errors[0],
                       "yaw_error_deg": errors[1], "roll_error_deg": errors[2], "kp_l1": kpErr]
        let text = summary.keys.sorted().map { "\($0): \(summary[$0]!)" }.joined(separator: "\n") + "\n"
        try text.write(to: directory.appendingPathComponent("angles.txt"), atomically: true, encoding: .utf8)
        return summary
    }
}
