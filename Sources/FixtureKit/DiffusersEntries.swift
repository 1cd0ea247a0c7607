// DiffusersEntries.swift — fixture entries for the diffusers / transformers blocks.
import Models
import NN
import Torch

let diffusersEntries: [FixtureEntry] = [
    FixtureEntry(["ResnetBlock2D"]) { c in
        let m = try ResnetBlock2D(c.config(ResnetBlock2D.Config.self))
        try m.load(from: c.weights())
        m.eval()
        let temb = c.hasInput("temb") ? try c.input("temb") : nil
        return ["out.hidden_states": try m(c.input("input_tensor"), temb: temb)]
    },
    FixtureEntry(["BasicTransformerBlock"]) { c in
        let m = try BasicTransformerBlock(c.config(BasicTransformerBlock.Config.self))
        try m.load(from: c.weights())
        m.eval()
        let ctx = c.hasInput("encoder_hidden_states") ? try c.input("encoder_hidden_states") : nil
        return ["out.hidden_states": try m(c.input("hidden_states"), context: ctx)]
    },
]
