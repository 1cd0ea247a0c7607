// FrozenFeatureCache.swift — diffusers' `cache_latents` (train_dreambooth_lora_sdxl.py and others:
// encode the training images once with the frozen VAE instead of at every step), extended to the
// other frozen front-ends that see unaugmented frames: the CLIP image encoder and the motion
// extractor. Every frame of the dataset is encoded once, in a fixed order and in fixed chunks, so a
// resumed run gathers bit-identical features; steps then gather rows by (clip, frame). The VAE's
// posterior is cached as its moments, so latents are still sampled with the run's generator.
import Data
import Foundation
import Logging
import Models
import Torch

final class FrozenFeatureCache {
    /// The frozen networks, each taking a float32 CPU batch and returning float32 CPU features.
    struct Encoders {
        /// Images in [-1, 1] (n,3,S,S) → VAE moments (n, 2C, h, w).
        var moments: (Tensor) throws -> Tensor
        /// Images in [-1, 1] → CLIP image embeddings (n, 1, D); nil = not cached.
        var clip: ((Tensor) throws -> Tensor)?
        /// Frames at the motion-extractor size in [0, 1] → keypoints (n, K, 3); nil = not cached.
        var keypoints: ((Tensor) throws -> Tensor)?

        /// The VAE's moments and CLIP embeddings, and keypoints when a motion extractor is given,
        /// each computed as the stages compute them (weight dtype in, float32 out).
        init(vae: AutoencoderKL, imageEncoder: CLIPVisionModelWithProjection, processor: CLIPImageProcessor,
             motionExtractor: MotionExtractor?, precision: Precision) {
            let device = precision.device
            moments = { x in
                let d = try vae.encode(precision.frozenInput(x.to(device)))
                return try Tensor.cat([d.mean, d.logvar], dim: 1).to(.float32).to(.cpu)
            }
            clip = { x in try FrozenNetworks.clipEmbeds(imageEncoder, processor, x.to(device), precision: precision).to(.cpu) }
            keypoints = motionExtractor.map { me in
                { x in try me(precision.frozenInput(x.to(device))).to(.float32).to(.cpu) }
            }
        }
    }

    /// Each clip's rows, in dataset order.
    private let rowsOf: [String: Range<Int>]
    let moments: Tensor
    let clip: Tensor?
    let keypoints: Tensor?
    let device: Device

    /// Bytes the features of every frame of `sampler`'s dataset take in memory (one frame is
    /// encoded to learn the feature shapes).
    static func footprint(sampler: PairSampler, encoders: Encoders) throws -> Int {
        guard let first = sampler.dataset.clips.first(where: { $0.frameCount > 0 }) else { return 0 }
        let (images, motionInput) = try sampler.frames(first.id, [0])
        let x = try images.tensor()
        let features = try Torch.noGrad {
            [try encoders.moments(x)] + (try encoders.clip.map { [try $0(x)] } ?? [])
                + (try encoders.keypoints.map { [try $0(motionInput.tensor())] } ?? [])
        }
        let perFrame = features.reduce(0) { $0 + $1.shape.dropFirst().reduce(4, *) }
        return perFrame * sampler.dataset.clips.reduce(0) { $0 + $1.frameCount }
    }

    /// Encodes every frame of `sampler`'s dataset (train and val clips, as the sampler writes them)
    /// in chunks of `chunk`: the `Encoders` move each chunk to the run's device and bring the
    /// features back to CPU memory; gathered rows go to `device`.
    init(sampler: PairSampler, encoders: Encoders, device: Device, chunk: Int = 8, logger: Logger) throws {
        let clips = sampler.dataset.clips
        let total = clips.reduce(0) { $0 + $1.frameCount }
        var rows: [String: Range<Int>] = [:], next = 0
        for c in clips { rows[c.id] = next..<(next + c.frameCount); next += c.frameCount }
        var moments: [Tensor] = [], clip: [Tensor] = [], keypoints: [Tensor] = []
        let t0 = Date()
        logger.info("data.cache_latents: encoding \(total) frames once with the frozen networks")
        var done = 0, reported = 0
        for c in clips {
            for start in stride(from: 0, to: c.frameCount, by: chunk) {
                let (images, motionInput) = try sampler.frames(c.id, Array(start..<min(c.frameCount, start + chunk)))
                let x = try images.tensor()
                try Torch.noGrad {
                    moments.append(try encoders.moments(x))
                    if let f = encoders.clip { clip.append(try f(x)) }
                    if let f = encoders.keypoints { keypoints.append(try f(motionInput.tensor())) }
                }
                done += images.shape[0]
                if done * 4 / total > reported, done < total {
                    reported = done * 4 / total
                    logger.info("data.cache_latents: \(done)/\(total) frames")
                }
            }
        }
        self.moments = try Tensor.cat(moments, dim: 0)
        self.clip = clip.isEmpty ? nil : try Tensor.cat(clip, dim: 0)
        self.keypoints = keypoints.isEmpty ? nil : try Tensor.cat(keypoints, dim: 0)
        (rowsOf, self.device) = (rows, device)
        let seconds = String(format: "%.1f", Date().timeIntervalSince(t0))
        logger.info("data.cache_latents: \(total) frames encoded in \(seconds) s")
    }

    /// Row indices of (clip, frame) pairs; an error names a pair the cache does not hold.
    func rows(_ ids: [String], _ frames: [Int]) throws -> Tensor {
        precondition(ids.count == frames.count)
        let r = try zip(ids, frames).map { id, f -> Int64 in
            guard let r = rowsOf[id], (0..<r.count).contains(f) else {
                throw TrainingError.invalid("data.cache_latents: no cached features for clip '\(id)' frame \(f)")
            }
            return Int64(r.lowerBound + f)
        }
        return try Tensor(r)
    }

    private func gather(_ t: Tensor, _ ids: [String], _ frames: [Int]) throws -> Tensor {
        try t.indexSelect(0, rows(ids, frames)).to(device)
    }

    /// Scaled latents of the frames: the cached posterior's sample (drawn from `generator`) or its mode.
    func latents(_ ids: [String], _ frames: [Int], scale: Double, sample: Bool, generator: Generator?,
                 shard: BatchShard = .whole) throws -> Tensor {
        let dist = try DiagonalGaussian(moments: gather(moments, ids, frames))
        return try (sample ? dist.sample(generator: generator, shard: shard) : dist.mode()) * scale
    }

    func clipEmbeds(_ ids: [String], _ frames: [Int]) throws -> Tensor? {
        try clip.map { try gather($0, ids, frames) }
    }

    func keypoints(_ ids: [String], _ frames: [Int]) throws -> Tensor? {
        try keypoints.map { try gather($0, ids, frames) }
    }
}

/// Builds a `FrozenFeatureCache` on first use, so that re-running a finished run (as `make demo`
/// does) encodes nothing. Building uses no random draws, so when it happens does not change a run.
/// Whether the features fit is checked when this is made, before a run writes anything.
final class LazyFeatureCache {
    private var built: FrozenFeatureCache?
    private let build: () throws -> FrozenFeatureCache

    /// Refuses when the features would take more than `memoryLimit` bytes (default: a quarter of
    /// this machine's memory).
    init(sampler: PairSampler, encoders: FrozenFeatureCache.Encoders, device: Device, logger: Logger,
         memoryLimit: Double = Double(ProcessInfo.processInfo.physicalMemory) / 4) throws {
        let bytes = Double(try FrozenFeatureCache.footprint(sampler: sampler, encoders: encoders))
        guard bytes <= memoryLimit else {
            let (need, limit) = (String(format: "%.1f", bytes / 1_048_576), String(format: "%.1f", memoryLimit / 1_048_576))
            throw TrainingError.invalid("data.cache_latents: the frozen features of \(sampler.dataset.path) would take \(need) MiB, over the limit of \(limit) MiB (a quarter of this machine's memory); set data.cache_latents: false")
        }
        logger.info("data.cache_latents: \(String(format: "%.1f", bytes / 1_048_576)) MiB of features, encoded on first use")
        build = { try FrozenFeatureCache(sampler: sampler, encoders: encoders, device: device, logger: logger) }
    }

    func get() throws -> FrozenFeatureCache {
        if let built { return built }
        let c = try build()
        built = c
        return c
    }
}
