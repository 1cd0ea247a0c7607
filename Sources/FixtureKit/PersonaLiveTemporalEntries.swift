// PersonaLiveTemporalEntries.swift — fixture entries for PersonaLive's motion / temporal modules
// (both cases are `VanillaTemporalModule`; the case config's attention block types decide which)
// the timestep-conditioned StyleGAN2 discriminator with its losses, and PersonaLive's DDIM variant
// (per-frame timesteps over a (b f) c h w window, fixed step length) on Models.DDIMScheduler.
import Foundation
import Models
import NN
import Torch

let personaliveTemporalEntries: [FixtureEntry] = [
    FixtureEntry(["src.models.motion_module.VanillaTemporalModule"]) { c in
        let m = try VanillaTemporalModule(c.config(VanillaTemporalModule.Config.self))
        try m.load(from: c.weights())
        m.eval()
        // Spatial_Cross blocks read the per-frame motion tokens; Temporal_Self blocks take none.
        let tokens = c.hasInput("motion_hidden_states") ? try c.input("motion_hidden_states") : nil
        if m.config.hasCrossAttention && tokens == nil {
            throw FixtureError("\(c.name): cross-attention blocks need in.motion_hidden_states")
        }
        return ["out.hidden_states": try m(hidden: c.input("hidden_states"), motionTokens: tokens)]
    },
    FixtureEntry(["src.stylegan2.discriminator.Discriminator"]) { c in
        let d = try StyleGAN2Discriminator(c.config(StyleGAN2Discriminator.Config.self))
        try d.load(from: c.weights())
        d.eval()
        let fake = try c.input("fake"), real = try c.input("real"), t = try c.input("timesteps")
        return [
            "out.logits_fake": try d.logits(fake, timesteps: t),
            "out.logits_real": try d.logits(real, timesteps: t),
            "out.loss_G": try d(fake: fake, real: real, timesteps: t, gen: true).reshape([1]),
            "out.loss_D": try d(fake: fake, real: real, timesteps: t, gen: false).reshape([1]),
        ]
    },
    FixtureEntry(["src.scheduler.scheduler_ddim.DDIMScheduler"]) { c in
        let s = try DDIMScheduler(c.config(DDIMScheduler.Config.self))
        s.setStepLength(try personaliveStepLength(c))
        // The window's frames are flattened (b f) c h w, one timestep per frame.
        let step = try s.step(modelOutput: c.input("model_output"), timestep: c.input("timesteps"),
                              sample: c.input("sample"))
        let x0 = try c.input("add_noise_original"), noise = try c.input("add_noise_noise")
        return [
            "out.prev_sample": step.prevSample,
            "out.pred_original_sample": step.predOriginalSample,
            // 5-D (b, c, f, h, w) latents with (b f)-ordered per-frame timesteps, and one shared t.
            "out.add_noise_per_frame": try s.addNoise(x0, noise: noise, timesteps: c.input("timesteps")),
            "out.add_noise_single": try s.addNoise(x0, noise: noise, timesteps: c.input("add_noise_single_timestep")),
            "out.alphas_cumprod": s.alphasCumprod,
        ]
    },
]

/// The `set_step_length(N)` the case's config_note names (PersonaLive uses 333).
private func personaliveStepLength(_ c: FixtureCase) throws -> Int {
    let note = c.json["config_note"]?.string ?? ""
    guard let r = note.range(of: #"set_step_length\((\d+)\)"#, options: .regularExpression) else {
        throw FixtureError("\(c.name): config_note does not give set_step_length(N)")
    }
    let digits = note[r].drop { !$0.isNumber }.prefix { $0.isNumber }
    guard let n = Int(digits) else { throw FixtureError("\(c.name): unreadable step length in config_note") }
    return n
}
