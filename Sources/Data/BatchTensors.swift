// BatchTensors.swift — the thin last step of the data pipeline: sampler batches (Swift arrays) to
// Torch tensors, and prefetchers that deliver tensors for the trainers.
import Torch

extension FloatBatch {
    public func tensor() throws -> Tensor { try Tensor(values, shape: shape) }
}

/// A stage 1/2 batch as tensors (shapes as in `PairBatch`).
public struct PairTensors: @unchecked Sendable {
    public var step: Int
    public var clipIDs: [String]
    public var referenceIndices: [Int]
    public var targetIndices: [Int]
    public var reference: Tensor
    public var target: Tensor
    public var faceCrop: Tensor
    public var motionInput: Tensor
    public var referenceMotionInput: Tensor
    public var faceMask: Tensor
    public var localMask: Tensor
    public var targetPose: Tensor?
    public var targetKeypoints: Tensor?
    public var referencePose: Tensor?
    public var referenceKeypoints: Tensor?
}

/// A stage 3 batch as tensors (shapes as in `SequenceBatch`).
public struct SequenceTensors: @unchecked Sendable {
    public var step: Int
    public var clipIDs: [String]
    public var referenceIndices: [Int]
    public var frameIndices: [[Int]]
    public var reference: Tensor
    public var referenceMotionInput: Tensor
    public var frames: Tensor
    public var faceCrop: Tensor
    public var motionInput: Tensor
    public var faceMask: Tensor
    public var localMask: Tensor
    public var pose: Tensor?
    public var keypoints: Tensor?
}

extension SequenceTensors {
    /// Sample 0's frames as a batch of pairs, one per frame, each with the sequence's reference.
    public func framePairs() throws -> PairTensors {
        let f = frames.shape[1]
        func repeated(_ t: Tensor) throws -> Tensor { try t.narrow(0, start: 0, length: 1).repeated([f, 1, 1, 1]) }
        return PairTensors(step: step, clipIDs: [String](repeating: clipIDs[0], count: f),
                           referenceIndices: [Int](repeating: referenceIndices[0], count: f), targetIndices: frameIndices[0],
                           reference: try repeated(reference), target: try frames.select(0, 0),
                           faceCrop: try faceCrop.select(0, 0), motionInput: try motionInput.select(0, 0),
                           referenceMotionInput: try repeated(referenceMotionInput), faceMask: try faceMask.select(0, 0),
                           localMask: try localMask.select(0, 0), targetPose: try pose?.select(0, 0),
                           targetKeypoints: try keypoints?.select(0, 0), referencePose: nil, referenceKeypoints: nil)
    }
}

extension PairBatch {
    public func tensors() throws -> PairTensors {
        PairTensors(step: step, clipIDs: clipIDs, referenceIndices: referenceIndices, targetIndices: targetIndices,
                    reference: try reference.tensor(), target: try target.tensor(), faceCrop: try faceCrop.tensor(),
                    motionInput: try motionInput.tensor(), referenceMotionInput: try referenceMotionInput.tensor(),
                    faceMask: try faceMask.tensor(), localMask: try localMask.tensor(),
                    targetPose: try targetPose?.tensor(), targetKeypoints: try targetKeypoints?.tensor(),
                    referencePose: try referencePose?.tensor(), referenceKeypoints: try referenceKeypoints?.tensor())
    }
}

extension SequenceBatch {
    public func tensors() throws -> SequenceTensors {
        SequenceTensors(step: step, clipIDs: clipIDs, referenceIndices: referenceIndices, frameIndices: frameIndices,
                        reference: try reference.tensor(), referenceMotionInput: try referenceMotionInput.tensor(),
                        frames: try frames.tensor(), faceCrop: try faceCrop.tensor(), motionInput: try motionInput.tensor(),
                        faceMask: try faceMask.tensor(), localMask: try localMask.tensor(),
                        pose: try pose?.tensor(), keypoints: try keypoints?.tensor())
    }
}

extension PairSampler {
    /// Tensors for steps startStep, startStep+1, … built in the background.
    public func prefetcher(startStep: Int = 0, endStep: Int? = nil, capacity: Int = 4, workers: Int = 2) -> Prefetcher<PairTensors> {
        Prefetcher(startStep: startStep, endStep: endStep, capacity: capacity, workers: workers) { [self] step in
            try self.batch(step: step).tensors()
        }
    }
}

extension SequenceSampler {
    public func prefetcher(startStep: Int = 0, endStep: Int? = nil, capacity: Int = 4, workers: Int = 2) -> Prefetcher<SequenceTensors> {
        Prefetcher(startStep: startStep, endStep: endStep, capacity: capacity, workers: workers) { [self] step in
            try self.batch(step: step).tensors()
        }
    }
}
