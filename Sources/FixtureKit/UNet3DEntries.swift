// UNet3DEntries.swift — fixture entries for PersonaLive's denoising UNet (UNet3DConditionModel) alone,
// and with the reference UNet attached through ReferenceAttentionControl (reference bank, then a
// historical keyframe).
import Models
import NN
import Torch

let unet3dEntries: [FixtureEntry] = [
    FixtureEntry(["src.models.unet_3d.UNet3DConditionModel"]) { c in
        let m = try UNet3DConditionModel(c.config(UNet3DConditionModel.Config.self))
        try m.load(from: c.weights())
        m.eval()
        let sample = try c.input("sample"), t = try c.input("timestep")
        let clip = try c.input("clip_embeds"), motion = try c.input("motion_hidden_states")
        return [
            "out.sample": try m(sample, timesteps: t, clip: clip, motion: motion, poseCond: c.input("pose_cond_fea")),
            "out.sample_no_pose": try m(sample, timesteps: t, clip: clip, motion: motion, poseCond: nil),
        ]
    },
    FixtureEntry(["src.models.unet_3d.UNet3DConditionModel + src.models.unet_2d_condition.UNet2DConditionModel"
                  + " + src.models.mutual_self_attention.ReferenceAttentionControl"]) { c in
        let (denoiser, reference) = try caseUNets(c)

        let writerMode = c.config["writer"], readerMode = c.config["reader"]
        guard writerMode?["mode"]?.string ?? "write" == "write", readerMode?["mode"]?.string ?? "read" == "read" else {
            throw FixtureError("\(c.name): expected a writer in write mode and a reader in read mode")
        }
        for side in [writerMode, readerMode] where side?["do_classifier_free_guidance"] == .bool(true) {
            throw FixtureError("\(c.name): classifier-free guidance in reference attention is not supported")
        }
        let fusion = readerMode?["fusion_blocks"]?.string ?? "midup"
        guard writerMode?["fusion_blocks"]?.string ?? "midup" == fusion else {
            throw FixtureError("\(c.name): writer and reader must use the same fusion_blocks")
        }
        let control = try ReferenceAttentionControl(writer: reference, reader: denoiser, fusionBlocks: fusion)
        defer { control.detach() }

        let clip = try c.input("clip_embeds"), motion = try c.input("motion_hidden_states")
        let sample = try c.input("sample"), t = try c.input("timestep"), pose = try c.input("pose_cond_fea")
        var out: [String: Tensor] = [:]

        // 1. The reference UNet at t = 0 records the bank.
        out["out.reference_unet_sample"] = try reference(c.input("ref_latent"), timestep: 0, encoderHiddenStates: clip)
        for (j, recordings) in control.writerBanks.enumerated() {
            guard let bank = recordings.first else { throw FixtureError("\(c.name): writer block \(j) recorded nothing") }
            out["out.bank.\(j)"] = bank
        }
        // 2–3. reader.update(writer), then the denoiser with the reference tokens.
        try control.update(dropRatio: 0)
        out["out.sample"] = try denoiser(sample, timesteps: t, clip: clip, motion: motion, poseCond: pose)

        // 4–5. A historical keyframe (needs the reader's cache_kv, which keeps keyframe tokens).
        if c.hasInput("keyframe_latent") {
            guard readerMode?["cache_kv"] == .bool(true) else {
                throw FixtureError("\(c.name): keyframe tokens are only read with cache_kv true")
            }
            control.clearWriter()
            _ = try reference(c.input("keyframe_latent"), timestep: 0, encoderHiddenStates: clip)
            guard try control.updateKeyframe() else { throw FixtureError("\(c.name): keyframe not accepted") }
            out["out.sample_with_keyframe"] = try denoiser(sample, timesteps: t, clip: clip, motion: motion, poseCond: pose)
        }
        return out
    },
]

/// `config.<key>` of a case holding several models' configs, decoded strictly as `T`.
/// The denoising UNet (weights.safetensors) and the reference UNet (weights_reference.safetensors;
/// PersonaLive's has no conv_norm_out / conv_out) of a case with both, in eval mode.
func caseUNets(_ c: FixtureCase) throws -> (UNet3DConditionModel, UNet2DConditionModel) {
    let denoiser = try UNet3DConditionModel(subConfig(c, "denoising_unet"))
    try denoiser.load(from: c.weights())
    denoiser.eval()
    let reference = try UNet2DConditionModel(subConfig(c, "reference_unet"), withOutputLayers: false)
    try reference.load(from: c.weights("weights_reference.safetensors"))
    reference.eval()
    return (denoiser, reference)
}

func subConfig<T: Decodable>(_ c: FixtureCase, _ key: String) throws -> T {
    guard let value = c.config[key] else { throw FixtureError("\(c.name): config has no '\(key)'") }
    do {
        return try value.decode(T.self)
    } catch {
        throw FixtureError("\(c.name): config.\(key) does not decode as \(T.self): \(error)")
    }
}
