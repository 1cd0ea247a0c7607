// StageData.swift — feeds a stage from the dataset's deterministic samplers through a background
// prefetcher. Batch `i` is a pure function of (seed, i), so the trainer's data cursor is enough
// to resume on exactly the same samples.
import Data
import Foundation
import Logging
import Torch

/// What the stages fed with stage-1/2 pairs share: the config, where and how they compute, and
/// the train and val feeds (batch size and data-wait time for the trainer come from them).
public class PairFedStage {
    let config: TrainingConfig
    public let precision: Precision
    let feed: PairFeed
    let valFeed: PairFeed
    public var batchSize: Int { config.data.train_bs }
    public var dataWaitSeconds: Double { feed.waitSeconds }

    init(config: TrainingConfig, precision: Precision, feeds: (train: PairFeed, val: PairFeed)) {
        self.config = config
        self.precision = precision
        (feed, valFeed) = feeds
    }
}

/// A deterministic batch source: batch `step` is a pure function of (seed, step).
protocol BatchSource: AnyObject, Sendable {
    associatedtype Batch: DeviceMovable
    func tensors(step: Int) throws -> Batch
}

/// A batch that can be handed out on a device.
protocol DeviceMovable {
    func to(_ device: Device) throws -> Self
}

extension PairSampler: BatchSource {
    func tensors(step: Int) throws -> PairTensors { try batch(step: step).tensors() }
}

extension SequenceSampler: BatchSource {
    func tensors(step: Int) throws -> SequenceTensors { try batch(step: step).tensors() }
}

/// The batches of one stage's data stream (pairs for stages 1–2, sequences for stage 3) through a
/// background prefetcher, on the stage's device. With `worldSize` > 1, rank r hands out the
/// sampler's batches r, r + worldSize, r + 2·worldSize, … as its batches 0, 1, 2, … (each rank a
/// disjoint share of the same deterministic stream; one rank is the whole stream).
final class BatchFeed<Source: BatchSource> {
    let sampler: Source
    let capacity: Int
    /// Batches are handed out on this device.
    let device: Device
    let rank: Int
    let worldSize: Int
    private var prefetcher: Prefetcher<Source.Batch>?
    private var expected = -1
    /// Seconds callers spent blocked on `batch` (0 when the prefetcher keeps ahead).
    private(set) var waitSeconds = 0.0

    init(sampler: Source, prefetch: Int, device: Device = .cpu, rank: Int = 0, worldSize: Int = 1) throws {
        guard worldSize >= 1, (0..<worldSize).contains(rank) else {
            throw TrainingError.invalid("data feed: rank \(rank) is not in 0..<\(worldSize)")
        }
        self.sampler = sampler
        capacity = max(1, prefetch)
        self.device = device
        self.rank = rank
        self.worldSize = worldSize
    }

    /// The sampler's step for this rank's batch `index`.
    func samplerStep(_ index: Int) -> Int { index * worldSize + rank }

    /// The batch with index `index`; sequential requests come from the prefetch queue.
    func batch(_ index: Int) throws -> Source.Batch {
        if index != expected || prefetcher == nil {
            prefetcher?.stop()
            // Its k-th batch is the sampler's step samplerStep(k).
            let (source, r, w) = (sampler, rank, worldSize)
            prefetcher = Prefetcher(startStep: index, capacity: capacity, workers: 1) { k in
                try source.tensors(step: k * w + r)
            }
        }
        let t0 = Date()
        defer { waitSeconds += Date().timeIntervalSince(t0) }
        guard let (step, b) = try prefetcher!.next() else { throw TrainingError.invalid("data stream ended at batch \(index)") }
        guard step == index else { throw TrainingError.invalid("prefetcher returned batch \(step), wanted \(index)") }
        expected = index + 1
        return try b.to(device)
    }

    deinit { prefetcher?.stop() }
}

/// Stages 1 and 2: reference/target pairs.
typealias PairFeed = BatchFeed<PairSampler>
/// Stage 3: 40-frame sequences.
typealias SequenceFeed = BatchFeed<SequenceSampler>

extension PairFeed {
    convenience init(dataset: DatasetReader, config: SamplerConfig, prefetch: Int, device: Device = .cpu) throws {
        try self.init(sampler: try PairSampler(dataset: dataset, config: config), prefetch: prefetch, device: device)
    }
}

extension PairTensors: DeviceMovable {
    /// Every tensor of the batch on `device`.
    func to(_ device: Device) throws -> PairTensors {
        var b = self
        func move(_ t: Tensor) throws -> Tensor { t.device == device ? t : try t.to(device) }
        b.reference = try move(reference)
        b.target = try move(target)
        b.faceCrop = try move(faceCrop)
        b.motionInput = try move(motionInput)
        b.referenceMotionInput = try move(referenceMotionInput)
        b.faceMask = try move(faceMask)
        b.localMask = try move(localMask)
        b.targetPose = try targetPose.map(move)
        b.targetKeypoints = try targetKeypoints.map(move)
        b.referencePose = try referencePose.map(move)
        b.referenceKeypoints = try referenceKeypoints.map(move)
        return b
    }
}

extension SequenceTensors: DeviceMovable {
    func to(_ device: Device) throws -> SequenceTensors {
        var b = self
        func move(_ t: Tensor) throws -> Tensor { t.device == device ? t : try t.to(device) }
        b.reference = try move(reference)
        b.referenceMotionInput = try move(referenceMotionInput)
        b.frames = try move(frames)
        b.faceCrop = try move(faceCrop)
        b.motionInput = try move(motionInput)
        b.faceMask = try move(faceMask)
        b.localMask = try move(localMask)
        b.pose = try pose.map(move)
        b.keypoints = try keypoints.map(move)
        return b
    }
}

/// The train feed (config seed, data.train_bs) and the val feed (validation seed and size) of a
/// stage, at the given image sizes, handing out batches on `device`.
func stageFeeds(_ c: TrainingConfig, dataset: DatasetReader, imageSize: Int, motionEncoderSize: Int? = nil,
                motionExtractorSize: Int? = nil, valBatch: Int? = nil,
                device: Device = .cpu) throws -> (train: PairFeed, val: PairFeed) {
    let me = motionEncoderSize ?? imageSize, mx = motionExtractorSize ?? imageSize
    let train = try PairFeed(dataset: dataset, config: samplerConfig(c, imageSize: imageSize, motionEncoderSize: me,
                                                                     motionExtractorSize: mx, split: "train",
                                                                     batchSize: c.data.train_bs, seed: c.seed),
                             prefetch: c.data.prefetch, device: device)
    let val = try PairFeed(dataset: dataset, config: samplerConfig(c, imageSize: imageSize, motionEncoderSize: me,
                                                                   motionExtractorSize: mx, split: "val",
                                                                   batchSize: valBatch ?? c.validation.num_samples,
                                                                   seed: c.validation.seed), prefetch: 1, device: device)
    return (train, val)
}

/// Sampler settings from the config's data section for a split.
func samplerConfig(_ c: TrainingConfig, imageSize: Int, motionEncoderSize: Int, motionExtractorSize: Int,
                   split: String, batchSize: Int, seed: UInt64) -> SamplerConfig {
    let jitter = c.data.color_jitter.count == 3 ? c.data.color_jitter : DataSection().color_jitter
    return SamplerConfig(imageSize: imageSize, motionEncoderSize: motionEncoderSize, motionExtractorSize: motionExtractorSize,
                         sampleMargin: c.data.sample_margin, nSampleFrames: c.data.n_sample_frames,
                         sampleRate: c.data.sample_rate, batchSize: batchSize, seed: seed, split: split,
                         brightness: jitter[0], contrast: jitter[1], saturation: jitter[2],
                         // Data parallelism shards the train stream; validation runs on rank 0 only.
                         rank: split == "train" ? c.rank : 0, worldSize: split == "train" ? c.worldSize : 1)
}

/// Images in [-1, 1], (B, 3, H, W) → a grid image with one column per tensor and one row per sample.
func gridImage(_ columns: [Tensor]) throws -> [UInt8] {
    // (B,3,H,W) each → concat along width, then rows along height → (3, B·H, k·W)
    let row = try Tensor.cat(columns.map { try $0.clamp(min: -1, max: 1) }, dim: 3)
    let s = row.shape
    let stacked = try row.permute([1, 0, 2, 3]).reshape([3, s[0] * s[2], s[3]])
    let hwc = try ((stacked + 1) * 127.5).round().clamp(min: 0, max: 255).to(.uint8).permute([1, 2, 0]).contiguous()
    return try hwc.toArray(UInt8.self)
}
