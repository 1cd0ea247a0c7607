// FrontEnds.swift — what the streaming path computes around the denoiser (src/wrapper.py
// fuse_reference, process_input, crop_face_tensor; src/utils/util.py get_boxes / draw_keypoints;
// REFERENCE.md §A1): the reference's CLIP embedding, VAE latent (distribution mean × scale) and
// keypoint detection; each driving frame's detection (whole frame resized to the extractor's input,
// no face crop), its face crop from its own keypoints (factor 1.7) for the motion encoder, and the
// rendered retargeted keypoints for the PoseGuider. Sizes come from the model's PipelineSettings
// (512 / 224 / 256 at the paper's size). Resizes of still images use bicubic where PIL uses Lanczos.
import Foundation
import Media
import Models
import NN
import Torch

/// A reference portrait, encoded once per stream.
public struct ReferenceFeatures {
    /// (1, 3, S, S) in [-1, 1].
    public let image: Tensor
    /// (1, c, h, w), already scaled.
    public let latent: Tensor
    /// (1, 1, D) CLIP image embedding.
    public let clip: Tensor
    /// The motion extractor's raw outputs (pose bins) for the reference.
    public let detection: KeypointInfo
    /// (1, tokens, dim) motion tokens of the reference's face.
    public let motion: Tensor
}

/// Driving frames as the stream consumes them: head pose per frame (pitch/yaw/roll in degrees,
/// translation, scale, canonical keypoints), and optionally the frames themselves and their motion tokens.
public struct DrivingChunk {
    public var pose: KeypointInfo
    /// (n, tokens, dim), or nil to use the reference's (a still expression).
    public var motion: Tensor?
    /// (n, 3, S, S) in [-1, 1], when driven by video (for grids).
    public var frames: Tensor?

    public init(pose: KeypointInfo, motion: Tensor?, frames: Tensor?) {
        self.pose = pose
        self.motion = motion
        self.frames = frames
    }

    public var count: Int { pose.batch }
}

public struct FrontEnds {
    public let model: PersonaLiveModel
    public init(model: PersonaLiveModel) { self.model = model }

    var size: Int { model.settings.image_size }

    /// Frames as the model takes them: square (centre crop when not square, as the webcam page
    /// does), resized to S, (n, 3, S, S) in [-1, 1] on the model's device.
    public func frames(_ images: [RGBImage]) throws -> Tensor {
        try Tensor.stack(images.map { image in
            let square = image.width == image.height ? image : try image.centerSquareCropped()
            return try square.resized(width: size, height: size, filter: .bicubic).tensorCHW(.signed)
        }, dim: 0).to(model.device, model.dtype)
    }

    /// fuse_reference with a portrait: resized to S × S without keeping its aspect (as
    /// VaeImageProcessor.preprocess does); CLIP sees the whole image (its processor resizes and crops).
    public func encodeReference(_ image: RGBImage) throws -> ReferenceFeatures {
        let x = try image.resized(width: size, height: size, filter: .bicubic).tensorCHW(.signed).unsqueeze(0)
        return try encodeReference(x, clipInput: image.tensorCHW(.unit).unsqueeze(0))
    }

    /// fuse_reference: CLIP embedding of `clipInput` (1, 3, H, W) in [0, 1] (default: the image
    /// itself), VAE latent (mean × scale), keypoint detection and the reference face's motion tokens
    /// of `image` (1, 3, S, S) in [-1, 1].
    public func encodeReference(_ image: Tensor, clipInput: Tensor? = nil) throws -> ReferenceFeatures {
        try Torch.noGrad {
            let x = try image.to(model.device, model.dtype)
            let pixels = try (clipInput ?? (image + 1) / 2).to(model.device, model.dtype)
            let clip = try model.imageEncoder(model.clipProcessor(pixels)).imageEmbeds.unsqueeze(1)
            let latent = try model.vae.encode(x).mode() * model.settings.latent_scale
            let detection = try detect(x)
            let face = try faceCrops(x, keypoints: model.motionExtractor.transformedKeypoints(detection))
            return ReferenceFeatures(image: x, latent: latent, clip: clip, detection: detection,
                                     motion: try model.motionEncoder(face))
        }
    }

    /// The motion extractor's outputs for frames (n, 3, S, S) in [-1, 1]: the whole frame resized
    /// (bilinear) to its input size, in [0, 1], no face crop.
    public func detect(_ frames: Tensor) throws -> KeypointInfo {
        let e = model.settings.motion_extractor_size
        var x = frames
        if x.shape[2] != e || x.shape[3] != e { x = try F.interpolate(x, size: (e, e), mode: .bilinear) }
        return try model.motionExtractor.detector(x / 2 + 0.5)
    }

    /// The detection with pitch/yaw/roll turned into degrees (what pose files store; the stream
    /// treats both forms alike).
    public func inDegrees(_ d: KeypointInfo) throws -> KeypointInfo {
        var out = d
        out.pitch = try model.motionExtractor.degrees(d.pitch)
        out.yaw = try model.motionExtractor.degrees(d.yaw)
        out.roll = try model.motionExtractor.degrees(d.roll)
        out.exp = nil
        return out
    }

    /// Video frames → a driving chunk: detection in degrees, and motion tokens of the face crops
    /// boxed by each frame's own keypoints.
    public func drivingChunk(_ frames: Tensor) throws -> DrivingChunk {
        try Torch.noGrad {
            let pose = try inDegrees(detect(frames))
            let own = try model.motionExtractor.transformedKeypoints(pose)
            let motion = try model.motionEncoder(faceCrops(frames, keypoints: own))
            return DrivingChunk(pose: pose, motion: motion, frames: frames)
        }
    }

    /// crop_face_tensor: each frame's face box from its keypoints (get_boxes, factor 1.7, in S-pixel
    /// coordinates), cropped from the [-1, 1] frame and resized (bilinear) to the motion encoder's size.
    public func faceCrops(_ frames: Tensor, keypoints: Tensor) throws -> Tensor {
        let s = frames.shape, e = model.settings.motion_encoder_size
        let boxes = try Keypoints.boxes(keypoints.to(.float32), height: s[2], width: s[3]).to(.cpu).toArray(Int64.self)
        return try Tensor.cat((0..<s[0]).map { i in
            let b = boxes[(4 * i)..<(4 * i + 4)].map(Int.init)
            let (x1, y1) = (b[0], b[1])
            let (w, h) = (max(1, b[2] - x1), max(1, b[3] - y1))
            let crop = try frames.narrow(0, start: i, length: 1).narrow(2, start: y1, length: h).narrow(3, start: x1, length: w)
            return try F.interpolate(crop, size: (e, e), mode: .bilinear)
        }, dim: 0)
    }

    /// draw_keypoints on an S × S canvas → (n, 3, S, S) in [0, 1].
    public func render(_ keypoints: Tensor) throws -> Tensor {
        try Keypoints.draw(keypoints.to(.float32), height: size, width: size, radius: model.settings.renderRadius)
            .to(model.device, model.dtype)
    }

    /// PoseGuider features of rendered canvases (n, 3, S, S) → (1, C0, n, h, w).
    public func poseFeatures(_ canvases: Tensor) throws -> Tensor {
        try model.poseGuider(canvases.permute([1, 0, 2, 3]).unsqueeze(0))
    }

    /// Pitch, yaw and roll in degrees (N, 3) that the motion extractor reads from images (N, 3, S, S)
    /// in [-1, 1] (resized to its input size): how far a generated head is from its driving pose.
    public func headAngles(_ images: Tensor) throws -> Tensor {
        try Torch.noGrad {
            let d = try detect(images.to(model.device, model.dtype))
            let me = model.motionExtractor
            return try Keypoints.headAngles(pitch: d.pitch, yaw: d.yaw, roll: d.roll, numBins: me.config.num_bins, idx: me.idx_tensor)
        }
    }

    /// Scaled latents (n, c, h, w) → images (n, 3, S, S) in [0, 1] (vae.decode(z / scale) / 2 + 0.5, clamped).
    public func decode(_ latents: Tensor) throws -> Tensor {
        try (model.vae.decode(latents / model.settings.latent_scale) / 2 + 0.5).clamp(min: 0, max: 1)
    }
}
