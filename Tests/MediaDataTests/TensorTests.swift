// TensorTests.swift — the last step of the pipeline: images and sampler batches become Torch
// tensors with the right shapes, dtypes and values; prefetchers deliver tensors.
import Foundation
import Testing
import Torch
@testable import Data
@testable import Media

@Suite("Tensor conversion")
struct TensorTests {
    @Test func imagesRoundTripThroughTensors() throws {
        let img = TestSupport.pattern(width: 20, height: 12, t: 4)
        let hwc = try img.tensorHWC()
        #expect(hwc.shape == [12, 20, 3] && hwc.dtype == .uint8)
        #expect(try RGBImage(hwc: hwc) == img)
        let chw = try img.tensorCHW(.signed)
        #expect(chw.shape == [3, 12, 20] && chw.dtype == .float32)
        let v = try chw.toArray(Float.self)
        #expect(abs(v[2 * 240 + 21] - (Float(img.pixels[21 * 3 + 2]) * 2 / 255 - 1)) < 1e-6)
        #expect(try RGBImage(chw: chw, range: .signed) == img)
        #expect(try RGBImage(chw: try img.tensorCHW(.unit), range: .unit) == img)
        #expect(throws: MediaError.self) { try RGBImage(hwc: chw) }
    }

    @Test func batchesBecomeTensors() throws {
        let (_, ds) = SamplerTests.dataset
        let pairs = try PairSampler(dataset: ds, config: SamplerTests.config(batch: 2))
        let b = try pairs.batch(step: 1)
        let t = try b.tensors()
        #expect(t.reference.shape == [2, 3, 32, 32] && t.reference.dtype == .float32)
        #expect(try t.target.toArray(Float.self) == b.target.values)
        #expect(t.faceCrop.shape == [2, 3, 24, 24] && t.faceMask.shape == [2, 1, 32, 32])
        #expect(t.targetKeypoints?.shape == [2, 21, 3])
        #expect(t.clipIDs == b.clipIDs && t.targetIndices == b.targetIndices)

        let p = pairs.prefetcher(startStep: 1, endStep: 3, capacity: 2, workers: 2)
        let first = try #require(try p.next())
        #expect(first.step == 1)
        #expect(try first.batch.motionInput.toArray(Float.self) == b.motionInput.values)
        #expect(try p.next()?.step == 2)
        #expect(try p.next() == nil)

        let seqs = try SequenceSampler(dataset: ds, config: SamplerTests.config(batch: 1))
        let s = try seqs.prefetcher(startStep: 0, endStep: 1).next()!.batch
        #expect(s.frames.shape == [1, 4, 3, 32, 32] && s.faceMask.shape == [1, 4, 1, 32, 32] && s.pose?.shape == [1, 4, 7])
    }
}
