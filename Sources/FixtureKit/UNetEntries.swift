// UNetEntries.swift — fixture entries for diffusers' Transformer2DModel and UNet2DConditionModel.
import Models
import NN
import Torch

let unetEntries: [FixtureEntry] = [
    FixtureEntry(["Transformer2DModel"]) { c in
        let m = try Transformer2DModel(c.config(Transformer2DModel.Config.self))
        try m.load(from: c.weights())
        m.eval()
        let ctx = c.hasInput("encoder_hidden_states") ? try c.input("encoder_hidden_states") : nil
        return ["out.sample": try m(c.input("hidden_states"), context: ctx)]
    },
    FixtureEntry(["UNet2DConditionModel"]) { c in
        let m = try UNet2DConditionModel(c.config(UNet2DConditionModel.Config.self))
        try m.load(from: c.weights())
        m.eval()
        let sample = try c.input("sample")
        let ctx = c.hasInput("encoder_hidden_states") ? try c.input("encoder_hidden_states") : nil
        // Configs with time_cond_proj_dim take a guidance embedding through timestep_cond.
        let cond = c.hasInput("timestep_cond") ? try c.input("timestep_cond") : nil
        // The reference captured out.intermediate.<module> with forward hooks during the first call.
        var outputs: [String: Tensor] = [:]
        outputs["out.sample"] = try m(sample, timestep: c.input("timestep"), encoderHiddenStates: ctx,
                                   timestepCond: cond) { name, t in
            outputs["out.intermediate.\(name)"] = t
        }
        if c.hasInput("scalar_timestep") {
            // Passed to the reference as a 0-dim tensor, which the UNet broadcasts to the batch.
            let t = try c.input("scalar_timestep").reshape([])
            outputs["out.sample_scalar_timestep"] = try m(sample, timestep: t, encoderHiddenStates: ctx, timestepCond: cond)
        }
        return outputs
    },
]
