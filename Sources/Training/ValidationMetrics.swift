// ValidationMetrics.swift — the arithmetic of stage-1 validation's metrics as pure functions, so
// each is tested against a case with a known answer: head angles from the motion extractor's
// pitch/yaw/roll bin logits (`pose_error_*` reads them), the pose error between two sets of angles,
// the pixel MSE inside the face box (`face_mse_*`) and the face-weighted latent MSE (`masked_mse*`,
// the DESIGN §1 term that HybridMotionStep's `lossLocal` computes).
import Models
import Torch

public enum ValidationMetrics {
    /// Pitch, yaw and roll in degrees, (N, 3), from the motion extractor's bin logits (N, numBins)
    /// each: softmax · bin index · 3 − 1.5·(numBins − 1) (LivePortrait's headpose_pred_to_degree).
    public static func headAngles(pitch: Tensor, yaw: Tensor, roll: Tensor, numBins: Int, idx: Tensor) throws -> Tensor {
        try Keypoints.headAngles(pitch: pitch, yaw: yaw, roll: roll, numBins: numBins, idx: idx)
    }

    /// Mean absolute difference in degrees between head angles (N, 3) and the driving ones (N, 3)
    /// (or (1, 3), broadcast): the mean over samples and over pitch, yaw and roll.
    public static func poseError(_ angles: Tensor, _ driving: Tensor) throws -> Double {
        try (angles - driving).abs().mean().item()
    }

    /// Pixel MSE inside the face box: Σ (x − target)² · mask / (3 · Σ mask), images (N, 3, H, W)
    /// and mask (N, 1, H, W) in {0, 1}; an empty mask divides by 1.
    public static func faceMSE(_ x: Tensor, _ target: Tensor, faceMask: Tensor) throws -> Double {
        let maskSum = max(1, try faceMask.sum().item() * 3)
        return try ((x - target).square() * faceMask).sum().item() / maskSum
    }

    /// The masked latent MSE of DESIGN §1: mean((x̂0 · m − x · m)²) over every element, with
    /// m = nearest(face) + nearest(eyes and mouth) at latent size ∈ {0, 1, 2}; latents
    /// (N, C, 1, h, w), masks (N, 1, H, W).
    public static func maskedMSE(x0: Tensor, target: Tensor, faceMask: Tensor, localMask: Tensor) throws -> Double {
        let s = target.shape
        let m = try HybridMotionStep.facialMask(face: faceMask, local: localMask, latentSize: (s[3], s[4]), channels: s[1])
        return try F.mseLoss(x0 * m, target * m).item()
    }
}
