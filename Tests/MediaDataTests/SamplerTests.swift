// SamplerTests.swift — stage samplers (margins, sequence spacing, determinism from seed and step,
// shapes, value ranges, masks from boxes) and the bounded background prefetcher.
import Foundation
import Testing
@testable import Data
@testable import Media

@Suite("Samplers")
struct SamplerTests {
    /// A small synthetic dataset shared by the tests of this suite.
    static let dataset: (TestSupport.TempDir, DatasetReader) = {
        let dir = TestSupport.TempDir("samplers")
        let path = dir.file("synth.h5")
        try! SyntheticPortraits.write(to: path, config: SynthConfig(clips: 5, frames: 40, size: 32, seed: 5, valFraction: 0.2))
        return (dir, try! DatasetReader(path: path))
    }()

    static func config(batch: Int = 3, seed: UInt64 = 1) -> SamplerConfig {
        SamplerConfig(imageSize: 32, motionEncoderSize: 24, motionExtractorSize: 16, sampleMargin: 30, nSampleFrames: 4,
                      sampleRate: 3, batchSize: batch, seed: seed)
    }

    @Test func pairsRespectTheMargin() {
        var rng = SeededRandom(seed: 9)
        for count in [1, 2, 5, 31, 40, 100] {
            for _ in 0..<500 {
                let (r, t) = PairSampler.drawPair(count: count, margin: 30, rng: &rng)
                #expect(r >= 0 && r < count && t >= 0 && t < count)
                #expect(abs(r - t) >= min(30, count - 1), "count \(count): \(r), \(t)")
            }
        }
        // Both orders occur, and the extremes are reachable.
        var seen = Set<Int>()
        for _ in 0..<2000 { let (r, t) = PairSampler.drawPair(count: 40, margin: 30, rng: &rng); seen.insert(t - r) }
        #expect(seen.contains(39) && seen.contains(-39) && seen.contains(30) && seen.contains(-30))
        #expect(!seen.contains(29))
    }

    @Test func sequencesAreEvenlySpaced() {
        var rng = SeededRandom(seed: 4)
        for _ in 0..<200 {
            let idx = SequenceSampler.drawSequence(count: 40, n: 4, rate: 3, rng: &rng)
            #expect(idx.count == 4 && idx[0] >= 0 && idx[3] < 40)
            #expect(zip(idx.dropFirst(), idx).allSatisfy { $0 - $1 == 3 })
        }
        // Short clips shrink the stride, then repeat the last frame.
        #expect(SequenceSampler.drawSequence(count: 7, n: 4, rate: 3, rng: &rng) == [0, 2, 4, 6])
        #expect(SequenceSampler.drawSequence(count: 3, n: 4, rate: 3, rng: &rng) == [0, 1, 2, 2])
    }

    @Test func pairBatchesAreDeterministicAndWellFormed() throws {
        let (_, ds) = SamplerTests.dataset
        let s = try PairSampler(dataset: ds, config: SamplerTests.config())
        let b1 = try s.batch(step: 7), b2 = try s.batch(step: 7), b3 = try s.batch(step: 8)
        #expect(b1.reference == b2.reference && b1.faceCrop == b2.faceCrop && b1.targetIndices == b2.targetIndices)
        #expect(b1.reference != b3.reference || b1.targetIndices != b3.targetIndices)
        // A fresh sampler with the same seed (a resumed run) sees the same step.
        let resumed = try PairSampler(dataset: ds, config: SamplerTests.config())
        #expect(try resumed.batch(step: 7).target == b1.target)
        #expect(try PairSampler(dataset: ds, config: SamplerTests.config(seed: 2)).batch(step: 7).target != b1.target)

        #expect(b1.reference.shape == [3, 3, 32, 32] && b1.target.shape == [3, 3, 32, 32])
        #expect(b1.faceCrop.shape == [3, 3, 24, 24] && b1.motionInput.shape == [3, 3, 16, 16])
        #expect(b1.referenceMotionInput.shape == [3, 3, 16, 16])
        #expect(b1.faceMask.shape == [3, 1, 32, 32] && b1.localMask.shape == [3, 1, 32, 32])
        #expect(b1.targetPose?.shape == [3, 7] && b1.targetKeypoints?.shape == [3, 21, 3])
        #expect(b1.reference.values.allSatisfy { $0 >= -1 && $0 <= 1 })
        #expect(b1.faceCrop.values.allSatisfy { $0 >= -1 && $0 <= 1 })
        #expect(b1.motionInput.values.allSatisfy { $0 >= 0 && $0 <= 1 })
        let train = Set(try ds.split("train"))
        for i in 0..<3 {
            let id = b1.clipIDs[i]
            #expect(train.contains(id))
            #expect(abs(b1.referenceIndices[i] - b1.targetIndices[i]) >= 30)
            // The target image is the stored frame in [-1, 1].
            let frame = try ds.frame(id, b1.targetIndices[i])
            let hw = 32 * 32
            let base = i * 3 * hw
            #expect(abs(b1.target.values[base + 5] - (Float(frame.pixels[15]) * 2 / 255 - 1)) < 1e-6)
            #expect(abs(b1.target.values[base + 2 * hw + 5] - (Float(frame.pixels[17]) * 2 / 255 - 1)) < 1e-6)
            // The face mask is the face box, corners inclusive.
            let face = try ds.boxes(id, frame: b1.targetIndices[i]).face
            let w = Int(face.x2.rounded(.down)) - Int(face.x1.rounded(.down)) + 1
            let h = Int(face.y2.rounded(.down)) - Int(face.y1.rounded(.down)) + 1
            let maskSum = b1.faceMask.values[(i * hw)..<((i + 1) * hw)].reduce(0, +)
            #expect(Int(maskSum) == min(w, 32 - Int(face.x1)) * min(h, 32 - Int(face.y1)))
            let local = b1.localMask.values[(i * hw)..<((i + 1) * hw)]
            #expect(local.reduce(0, +) > 0 && local.allSatisfy { $0 == 0 || $0 == 1 })
            // Ground truth rows belong to the sampled frames.
            let pose = try ds.pose(id)!
            #expect(Array(b1.targetPose!.values[(i * 7)..<(i * 7 + 7)]) == Array(pose[(b1.targetIndices[i] * 7)..<(b1.targetIndices[i] * 7 + 7)]))
        }
    }

    @Test func epochsVisitEveryTrainingClip() throws {
        let (_, ds) = SamplerTests.dataset
        let s = try PairSampler(dataset: ds, config: SamplerTests.config(batch: 2))
        let train = try ds.split("train")
        #expect(train.count == 4)
        let ids = try (0..<2).flatMap { try s.batch(step: $0).clipIDs }
        #expect(Set(ids) == Set(train))
        // Two ranks of a data-parallel run draw disjoint samples of the same epoch.
        var c0 = SamplerTests.config(batch: 1), c1 = c0
        c0.worldSize = 2; c1.worldSize = 2; c1.rank = 1
        let r0 = try PairSampler(dataset: ds, config: c0), r1 = try PairSampler(dataset: ds, config: c1)
        let shard = try (0..<2).flatMap { try [r0.batch(step: $0).clipIDs[0], r1.batch(step: $0).clipIDs[0]] }
        #expect(Set(shard) == Set(train))
    }

    @Test func sequenceBatchesCarryPerFrameExtras() throws {
        let (_, ds) = SamplerTests.dataset
        let s = try SequenceSampler(dataset: ds, config: SamplerTests.config(batch: 2))
        let b = try s.batch(step: 3)
        #expect(b.frames.shape == [2, 4, 3, 32, 32])
        #expect(b.faceCrop.shape == [2, 4, 3, 24, 24] && b.motionInput.shape == [2, 4, 3, 16, 16])
        #expect(b.faceMask.shape == [2, 4, 1, 32, 32] && b.pose?.shape == [2, 4, 7] && b.keypoints?.shape == [2, 4, 21, 3])
        #expect(b.reference.shape == [2, 3, 32, 32])
        for idx in b.frameIndices { #expect(zip(idx.dropFirst(), idx).allSatisfy { $0 - $1 == 3 }) }
        #expect(try s.batch(step: 3).frames == b.frames)
        let frame = try ds.frame(b.clipIDs[1], b.frameIndices[1][2])
        let base = (1 * 4 + 2) * 3 * 32 * 32
        #expect(abs(b.frames.values[base + 100] - (Float(frame.pixels[300]) * 2 / 255 - 1)) < 1e-6)
    }

    @Test func prefetcherDeliversInOrderWithABoundedQueue() throws {
        let (_, ds) = SamplerTests.dataset
        let s = try PairSampler(dataset: ds, config: SamplerTests.config(batch: 2))
        let p = Prefetcher(startStep: 5, endStep: 11, capacity: 2, workers: 3) { step in try s.batch(step: step) }
        Thread.sleep(forTimeInterval: 0.3)
        #expect(p.queued <= 2)
        var steps: [Int] = []
        while let (step, batch) = try p.next() {
            steps.append(step)
            #expect(batch.step == step)
            #expect(batch.target == (try s.batch(step: step)).target)
            #expect(p.queued <= 2)
        }
        #expect(steps == [5, 6, 7, 8, 9, 10])

        struct Boom: Error {}
        let failing = Prefetcher(startStep: 0, capacity: 3, workers: 2) { step -> Int in
            if step == 2 { throw Boom() }
            return step * 10
        }
        #expect(try failing.next()?.batch == 0)
        #expect(try failing.next()?.batch == 10)
        #expect(throws: Boom.self) { try failing.next() }
        failing.stop()
        #expect(throws: SamplerError.self) { try failing.next() }
    }

    @Test func emptySplitIsAnError() throws {
        let dir = TestSupport.TempDir()
        let p = dir.file("one.h5")
        try SyntheticPortraits.write(to: p, config: SynthConfig(clips: 1, frames: 4, size: 16, seed: 1))
        var c = SamplerTests.config()
        c.split = "val"
        let e = #expect(throws: SamplerError.self) { _ = try PairSampler(dataset: try DatasetReader(path: p), config: c) }
        #expect(e?.description.contains("split 'val' has no clips") == true)
    }
}
