// VAEClipSchedulerEntries.swift — fixture entries for AutoencoderKL, CLIPVisionModelWithProjection and
// DDIMScheduler: each builds the module from the case's config, runs the calls case.json describes
// and returns every output it names.
import Foundation
import Models
import NN
import Torch

let vaeClipSchedulerEntries: [FixtureEntry] = [
    FixtureEntry(["AutoencoderKL"]) { c in
        let m = try AutoencoderKL(c.config(AutoencoderKL.Config.self))
        try m.loadAcceptingLegacyNames(from: c.weights())
        m.eval()
        var out: [String: Tensor] = [:]
        // Forward-hook equivalents: every named submodule output, under encode./decode. prefixes.
        let dist = try m.encode(c.input("image")) { name, t in out["out.intermediate.encode.\(name)"] = t }
        out["out.latent_mean"] = dist.mean
        out["out.latent_logvar"] = dist.logvar
        out["out.latent_std"] = dist.std
        out["out.decoded"] = try m.decode(c.input("latent")) { name, t in out["out.intermediate.decode.\(name)"] = t }
        out["out.roundtrip_decoded"] = try m.decode(dist.mean)
        return out
    },
    FixtureEntry(["CLIPVisionModelWithProjection"]) { c in
        let m = try CLIPVisionModelWithProjection(c.config(CLIPVisionModelWithProjection.Config.self))
        try m.loadIgnoringLegacyKeys(from: c.weights())
        m.eval()
        let o = try m(c.input("pixel_values"))
        var out: [String: Tensor] = [
            "out.image_embeds": o.imageEmbeds,
            "out.last_hidden_state": o.lastHiddenState,
            "out.pooler_output": o.pooled,
        ]
        for (i, h) in o.hiddenStates.enumerated() { out["out.hidden_states.\(i)"] = h }
        return out
    },
    FixtureEntry(["DDIMScheduler"]) { c in try runDDIMCase(c) },
]

/// The ddim_scheduler case: schedule tensors, set_timesteps, add_noise (single, per-sample,
/// per-frame), stock step chains `step<n>` and PersonaLive's fixed-step-length chain and frame batch.
func runDDIMCase(_ c: FixtureCase) throws -> [String: Tensor] {
    let sch = try DDIMScheduler(c.config(DDIMScheduler.Config.self))
    var out: [String: Tensor] = [
        "out.betas": sch.betas,
        "out.alphas_cumprod": sch.alphasCumprod,
        "out.final_alpha_cumprod": try sch.finalAlphaCumprod.reshape([1]),
    ]
    let call = c.json["call"]
    let stepCounts = Set((call?["num_steps_list"]?.array ?? []).compactMap(\.int)
                         + (call?["step_chains"]?.array ?? []).compactMap(\.int))
    for n in stepCounts.sorted() {
        try sch.setTimesteps(n)
        out["out.timesteps_\(n)"] = try Tensor(sch.timesteps.map(Int64.init))
    }

    // add_noise with one timestep for the whole batch: out.add_noise.t<T>.
    if c.hasInput("add_noise.original_samples") {
        let x0 = try c.input("add_noise.original_samples"), noise = try c.input("add_noise.noise")
        for key in c.outputKeys where key.hasPrefix("out.add_noise.t") {
            guard let t = Int(key.dropFirst("out.add_noise.t".count)) else { continue }
            out[key] = try sch.addNoise(x0, noise: noise, timestep: t)
        }
        if c.hasInput("add_noise.per_sample_timesteps") {
            out["out.add_noise.per_sample"] = try sch.addNoise(x0, noise: noise,
                                                               timesteps: c.input("add_noise.per_sample_timesteps"))
        }
    }
    if c.hasInput("add_noise_frames.original_samples") {
        out["out.add_noise_frames"] = try sch.addNoise(c.input("add_noise_frames.original_samples"),
                                                       noise: c.input("add_noise_frames.noise"),
                                                       timesteps: c.input("add_noise_frames.timesteps"))
    }

    // Stock chains: set_timesteps(n), then step at each timestep with the stored inputs.
    for n in stepCounts.sorted() where c.hasInput("step\(n).0.sample") {
        try sch.setTimesteps(n)
        for (i, t) in sch.timesteps.enumerated() {
            let p = "step\(n).\(i)"
            guard c.hasInput("\(p).sample") else { break }
            let given = try c.input("\(p).timestep").toArray(Int64.self)
            guard given == [Int64(t)] else {
                throw FixtureError("\(c.name): in.\(p).timestep is \(given); set_timesteps(\(n)) gives \(t)")
            }
            let r = try sch.step(modelOutput: c.input("\(p).model_output"), timestep: t, sample: c.input("\(p).sample"))
            out["out.\(p).prev_sample"] = r.prevSample
            out["out.\(p).pred_original_sample"] = r.predOriginalSample
        }
    }

    // PersonaLive: step length 333 over in.personalive.timesteps, and one per-frame batch.
    if c.hasInput("personalive.timesteps") {
        let pl = try DDIMScheduler(c.config(DDIMScheduler.Config.self))
        pl.setStepLength(333)
        let ts = try c.input("personalive.timesteps").toArray(Int64.self)
        for (i, t) in ts.enumerated() {
            let p = "personalive.\(i)"
            let r = try pl.step(modelOutput: c.input("\(p).model_output"), timestep: Int(t), sample: c.input("\(p).sample"))
            out["out.\(p).prev_sample"] = r.prevSample
            out["out.\(p).pred_original_sample"] = r.predOriginalSample
        }
        if c.hasInput("personalive_frames.sample") {
            let r = try pl.step(modelOutput: c.input("personalive_frames.model_output"),
                                timestep: c.input("personalive_frames.timesteps"),
                                sample: c.input("personalive_frames.sample"))
            out["out.personalive_frames.prev_sample"] = r.prevSample
            out["out.personalive_frames.pred_original_sample"] = r.predOriginalSample
        }
    }
    return out
}
