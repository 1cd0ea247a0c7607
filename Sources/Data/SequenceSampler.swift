// SequenceSampler.swift — stage 3 training samples (PersonaLive's video dataset): `nSampleFrames`
// frames every `sampleRate` frames of one clip plus a reference frame, each frame with the same
// extras as stage 1/2 (face crop, motion-extractor input, masks). Deterministic from (seed, step, rank).
// With `minimumFrames`, clips shorter than that are left out of the schedule and listed in
// `skipped` (stage 3 logs their count; portrait_video.py would repeat frames instead).
import Foundation
import Media

public struct SequenceBatch: Sendable {
    public var step: Int
    public var clipIDs: [String]
    public var referenceIndices: [Int]
    /// Frame indices per sample.
    public var frameIndices: [[Int]]
    /// (B,3,S,S) in [-1, 1].
    public var reference: FloatBatch
    /// (B,3,X,X) in [0, 1].
    public var referenceMotionInput: FloatBatch
    /// (B,F,3,S,S) in [-1, 1].
    public var frames: FloatBatch
    /// (B,F,3,E,E) in [-1, 1].
    public var faceCrop: FloatBatch
    /// (B,F,3,X,X) in [0, 1].
    public var motionInput: FloatBatch
    /// (B,F,1,S,S) 0/1.
    public var faceMask: FloatBatch
    public var localMask: FloatBatch
    /// (B,F,7) and (B,F,21,3) when every clip has ground truth.
    public var pose: FloatBatch?
    public var keypoints: FloatBatch?
}

public final class SequenceSampler: @unchecked Sendable {
    public let dataset: DatasetReader
    public let config: SamplerConfig
    private let schedule: ClipSchedule
    /// Clips of the split left out for having fewer than `minimumFrames` frames: (id, frame count).
    public let skipped: [(id: String, frames: Int)]
    /// Clips the schedule draws from.
    public var clipCount: Int { schedule.clips.count }

    /// `minimumFrames`: clips with fewer frames are skipped (listed in `skipped`); a split left
    /// without clips is an error naming the dataset, the split and the longest clip.
    public init(dataset: DatasetReader, config: SamplerConfig, minimumFrames: Int? = nil) throws {
        let full = try ClipSchedule(dataset: dataset, config: config)
        if let minimumFrames {
            var keep: [String] = [], short: [(id: String, frames: Int)] = []
            for id in full.clips {
                let n = try dataset.info(id).frameCount
                if n >= minimumFrames { keep.append(id) } else { short.append((id, n)) }
            }
            guard !keep.isEmpty else {
                let longest = short.map(\.frames).max() ?? 0
                throw SamplerError("\(dataset.path): every clip of split '\(config.split)' is shorter than \(minimumFrames) frames "
                                   + "(the longest has \(longest)); stage 3 needs clips of at least n_sample_frames frames")
            }
            schedule = ClipSchedule(clips: keep, seed: config.seed)
            skipped = short
        } else {
            schedule = full
            skipped = []
        }
        self.dataset = dataset
        self.config = config
    }

    /// `n` indices `rate` apart inside a clip of `count` frames; the stride shrinks for short clips,
    /// and a clip shorter than `n` repeats its last frame.
    static func drawSequence(count: Int, n: Int, rate: Int, rng: inout SeededRandom) -> [Int] {
        var stride = rate
        if n > 1 && (n - 1) * stride + 1 > count { stride = max(1, (count - 1) / (n - 1)) }
        let span = (n - 1) * stride + 1
        let start = span >= count ? 0 : rng.below(count - span + 1)
        return (0..<n).map { min(count - 1, start + $0 * stride) }
    }

    public func batch(step: Int) throws -> SequenceBatch {
        let c = config
        let b = c.batchSize, f = c.nSampleFrames, s = c.imageSize, x = c.motionExtractorSize
        var ids: [String] = [], refs: [Int] = [], indices: [[Int]] = []
        var reference = [Float](repeating: 0, count: b * 3 * s * s)
        var refMotion = [Float](repeating: 0, count: b * 3 * x * x)
        var frames = [Float](repeating: 0, count: b * f * 3 * s * s)
        var extras = SampleAugment.Extras(count: b * f, config: c)
        var pose: [Float] = [], kps: [Float] = []
        var allHaveTruth = true
        for i in 0..<b {
            let g = ClipSchedule.globalIndex(step: step, rank: c.rank, worldSize: c.worldSize, batchSize: b, sample: i)
            let id = schedule.clip(globalIndex: g)
            let info = try dataset.info(id)
            var rng = SeededRandom(seed: c.seed, 0x5E03, UInt64(g))
            let idx = SequenceSampler.drawSequence(count: info.frameCount, n: f, rate: c.sampleRate, rng: &rng)
            let r = rng.below(info.frameCount)
            let refFrame = try dataset.frame(id, r)
            SampleAugment.writeSigned(try SampleAugment.resize(refFrame, to: s), into: &reference, at: i * 3 * s * s)
            SampleAugment.writeUnit(try SampleAugment.resize(refFrame, to: x), into: &refMotion, at: i * 3 * x * x)
            let truth = allHaveTruth ? (try dataset.pose(id), try dataset.keypoints(id)) : (nil, nil)
            if truth.0 == nil || truth.1 == nil { allHaveTruth = false }
            for (j, t) in idx.enumerated() {
                let frame = try dataset.frame(id, t)
                SampleAugment.writeSigned(try SampleAugment.resize(frame, to: s), into: &frames, at: (i * f + j) * 3 * s * s)
                try extras.fill(i * f + j, frame: frame, boxes: try dataset.boxes(id, frame: t), config: c, rng: &rng)
                if allHaveTruth, let p = truth.0, let k = truth.1 {
                    pose += p[(t * 7)..<(t * 7 + 7)]
                    kps += k[(t * 63)..<(t * 63 + 63)]
                }
            }
            ids.append(id); refs.append(r); indices.append(idx)
        }
        let e = c.motionEncoderSize
        return SequenceBatch(
            step: step, clipIDs: ids, referenceIndices: refs, frameIndices: indices,
            reference: FloatBatch(shape: [b, 3, s, s], values: reference),
            referenceMotionInput: FloatBatch(shape: [b, 3, x, x], values: refMotion),
            frames: FloatBatch(shape: [b, f, 3, s, s], values: frames),
            faceCrop: FloatBatch(shape: [b, f, 3, e, e], values: extras.faceCrop),
            motionInput: FloatBatch(shape: [b, f, 3, x, x], values: extras.motionInput),
            faceMask: FloatBatch(shape: [b, f, 1, s, s], values: extras.faceMask),
            localMask: FloatBatch(shape: [b, f, 1, s, s], values: extras.localMask),
            pose: allHaveTruth ? FloatBatch(shape: [b, f, 7], values: pose) : nil,
            keypoints: allHaveTruth ? FloatBatch(shape: [b, f, 21, 3], values: kps) : nil)
    }
}
