// PairSampler.swift — stage 1/2 training samples (PersonaLive's image-level dataset): a reference
// and a target frame of one clip at least `sampleMargin` frames apart, with the target's face crop
// (motion encoder), the target and reference at the motion-extractor size, and face / eyes+mouth
// masks. Batch `step` is a pure function of (seed, step, rank), so a resumed run sees the same data.
import Foundation
import Media

public struct PairBatch: Sendable {
    public var step: Int
    public var clipIDs: [String]
    public var referenceIndices: [Int]
    public var targetIndices: [Int]
    /// (B,3,S,S) in [-1, 1].
    public var reference: FloatBatch
    /// (B,3,S,S) in [-1, 1].
    public var target: FloatBatch
    /// (B,3,E,E) in [-1, 1]: the target's jittered face crop for the motion encoder.
    public var faceCrop: FloatBatch
    /// (B,3,X,X) in [0, 1]: the target for the motion extractor.
    public var motionInput: FloatBatch
    /// (B,3,X,X) in [0, 1]: the reference for the motion extractor (its canonical keypoints and scale).
    public var referenceMotionInput: FloatBatch
    /// (B,1,S,S) 0/1 face box and eyes+mouth boxes.
    public var faceMask: FloatBatch
    public var localMask: FloatBatch
    /// Ground truth when every clip of the batch has it: (B,7) pose and (B,21,3) canonical keypoints.
    public var targetPose: FloatBatch?
    public var targetKeypoints: FloatBatch?
    public var referencePose: FloatBatch?
    public var referenceKeypoints: FloatBatch?
}

public final class PairSampler: @unchecked Sendable {
    public let dataset: DatasetReader
    public let config: SamplerConfig
    private let schedule: ClipSchedule

    public init(dataset: DatasetReader, config: SamplerConfig) throws {
        schedule = try ClipSchedule(dataset: dataset, config: config)
        self.dataset = dataset
        self.config = config
    }

    /// Reference and target indices in a clip of `count` frames, at least min(margin, count−1) apart.
    static func drawPair(count: Int, margin: Int, rng: inout SeededRandom) -> (Int, Int) {
        if count == 1 { return (0, 0) }
        let m = max(min(margin, count - 1), 0)
        // References that have a partner: [0, count−1−m] ∪ [m, count−1].
        var r = rng.below(count)
        if r > count - 1 - m && r < m { r = rng.unit() < 0.5 ? 0 : count - 1 }
        let left = max(0, r - m + 1)        // targets 0...r−m
        let right = max(0, count - (r + m)) // targets r+m...count−1
        let k = rng.below(left + right)
        let t = k < left ? k : r + m + (k - left)
        return (r, t)
    }

    /// Frames `frames` of clip `id` exactly as `batch` writes references and targets: (n,3,S,S) in
    /// [-1, 1], and (n,3,X,X) in [0, 1] at the motion-extractor size (what frozen-feature caches encode).
    public func frames(_ id: String, _ frames: [Int]) throws -> (images: FloatBatch, motionInput: FloatBatch) {
        let n = frames.count, s = config.imageSize, x = config.motionExtractorSize
        var images = [Float](repeating: 0, count: n * 3 * s * s)
        var motion = [Float](repeating: 0, count: n * 3 * x * x)
        for (i, f) in frames.enumerated() {
            let frame = try dataset.frame(id, f)
            SampleAugment.writeSigned(try SampleAugment.resize(frame, to: s), into: &images, at: i * 3 * s * s)
            SampleAugment.writeUnit(try SampleAugment.resize(frame, to: x), into: &motion, at: i * 3 * x * x)
        }
        return (FloatBatch(shape: [n, 3, s, s], values: images), FloatBatch(shape: [n, 3, x, x], values: motion))
    }

    /// The batch for one training step.
    public func batch(step: Int) throws -> PairBatch {
        let c = config
        let b = c.batchSize, s = c.imageSize, x = c.motionExtractorSize
        var ids: [String] = [], refs: [Int] = [], tgts: [Int] = []
        var reference = [Float](repeating: 0, count: b * 3 * s * s)
        var target = [Float](repeating: 0, count: b * 3 * s * s)
        var refMotion = [Float](repeating: 0, count: b * 3 * x * x)
        var extras = SampleAugment.Extras(count: b, config: c)
        var pose: [Float] = [], kps: [Float] = [], refPose: [Float] = [], refKps: [Float] = []
        var allHaveTruth = true
        for i in 0..<b {
            let g = ClipSchedule.globalIndex(step: step, rank: c.rank, worldSize: c.worldSize, batchSize: b, sample: i)
            let id = schedule.clip(globalIndex: g)
            let info = try dataset.info(id)
            var rng = SeededRandom(seed: c.seed, 0x9A12, UInt64(g))
            let (r, t) = PairSampler.drawPair(count: info.frameCount, margin: c.sampleMargin, rng: &rng)
            let refFrame = try dataset.frame(id, r), tgtFrame = try dataset.frame(id, t)
            SampleAugment.writeSigned(try SampleAugment.resize(refFrame, to: s), into: &reference, at: i * 3 * s * s)
            SampleAugment.writeSigned(try SampleAugment.resize(tgtFrame, to: s), into: &target, at: i * 3 * s * s)
            SampleAugment.writeUnit(try SampleAugment.resize(refFrame, to: x), into: &refMotion, at: i * 3 * x * x)
            try extras.fill(i, frame: tgtFrame, boxes: try dataset.boxes(id, frame: t), config: c, rng: &rng)
            ids.append(id); refs.append(r); tgts.append(t)
            if allHaveTruth, let p = try dataset.pose(id), let k = try dataset.keypoints(id) {
                pose += p[(t * 7)..<(t * 7 + 7)]; refPose += p[(r * 7)..<(r * 7 + 7)]
                kps += k[(t * 63)..<(t * 63 + 63)]; refKps += k[(r * 63)..<(r * 63 + 63)]
            } else {
                allHaveTruth = false
            }
        }
        return PairBatch(
            step: step, clipIDs: ids, referenceIndices: refs, targetIndices: tgts,
            reference: FloatBatch(shape: [b, 3, s, s], values: reference), target: FloatBatch(shape: [b, 3, s, s], values: target),
            faceCrop: FloatBatch(shape: [b, 3, c.motionEncoderSize, c.motionEncoderSize], values: extras.faceCrop),
            motionInput: FloatBatch(shape: [b, 3, x, x], values: extras.motionInput),
            referenceMotionInput: FloatBatch(shape: [b, 3, x, x], values: refMotion),
            faceMask: FloatBatch(shape: [b, 1, s, s], values: extras.faceMask), localMask: FloatBatch(shape: [b, 1, s, s], values: extras.localMask),
            targetPose: allHaveTruth ? FloatBatch(shape: [b, 7], values: pose) : nil,
            targetKeypoints: allHaveTruth ? FloatBatch(shape: [b, 21, 3], values: kps) : nil,
            referencePose: allHaveTruth ? FloatBatch(shape: [b, 7], values: refPose) : nil,
            referenceKeypoints: allHaveTruth ? FloatBatch(shape: [b, 21, 3], values: refKps) : nil)
    }
}
