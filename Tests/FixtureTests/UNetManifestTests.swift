// UNetManifestTests.swift — the full-size SD-1.5 image-variations UNet (and PersonaLive's reference
// UNet, which drops conv_norm_out/conv_out) built with uninitialised storage has exactly the
// state-dict keys and shapes PyTorch lists in the manifests: same order, count and parameter total.
import Foundation
import Testing
import Models
import NN
import Torch

@Suite struct UNetManifestTests {
    @Test("SD-1.5 image-variations UNet matches its manifest")
    func sd15UNet() throws {
        let manifest = try Manifest("sd15_image_variations_unet.json", listKey: "state_dict")
        let config = try manifest.config(UNet2DConditionModel.Config.self, field: "constructor_config")
        #expect(config == .sd15ImageVariations)
        // The full diffusers config (defaults spelled out) must decode to the same model.
        #expect(try manifest.config(UNet2DConditionModel.Config.self, field: "resolved_config") == config)
        let model = try ParameterInit.uninitialized { try UNet2DConditionModel(config) }
        // Keys, shapes and PyTorch's registration order (so files we write list keys as torch.save
        // would); the key count, and the state-dict element total against the parameter total.
        manifest.expectMatch(model)
        try manifest.expectTotals(of: model, numKeys: "num_state_dict_keys", stateDictElements: "total_parameters",
                                  parameters: nil)
        // SD-1.x quirk: attention_head_dim 8 is the head count, so head_dim is 40 / 80 / 160.
        let dims = model.transformerBlocks.map { $0.attn1.dimHead }
        #expect(dims.count == 16)
        #expect(Set(dims) == [40, 80, 160])
        #expect(model.transformerBlocks.allSatisfy { $0.attn1.heads == 8 })
    }

    @Test("PersonaLive reference UNet (no conv_norm_out / conv_out) matches its manifest")
    func referenceUNet() throws {
        let manifest = try Manifest("personalive_reference_unet.json", listKey: "keys")
        let config = try manifest.config(UNet2DConditionModel.Config.self)
        let model = try ParameterInit.uninitialized { try UNet2DConditionModel(config, withOutputLayers: false) }
        manifest.expectMatch(model)
        try manifest.expectTotals(of: model, stateDictElements: "total_param_count", parameters: nil)
    }

    @Test("Configs/sd15/unet_config.json is the image-variations UNet config")
    func shippedConfig() throws {
        let url = TestPaths.packageRoot.appendingPathComponent("Configs/sd15/unet_config.json")
        let config = try JSONDecoder().decode(UNet2DConditionModel.Config.self, from: Data(contentsOf: url))
        #expect(config == .sd15ImageVariations)
        // Our encoding is a valid diffusers config that decodes back to the same value.
        let again = try JSONDecoder().decode(UNet2DConditionModel.Config.self, from: JSONEncoder().encode(config))
        #expect(again == config)
    }

    @Test("a misspelled or unsupported UNet config key is an error that names it")
    func strictConfig() throws {
        let misspelled = Data(#"{"attention_head_dims": 8}"#.utf8)
        #expect {
            try JSONDecoder().decode(UNet2DConditionModel.Config.self, from: misspelled)
        } throws: { "\($0)".contains("attention_head_dims") && "\($0)".contains("attention_head_dim'") }
        let unsupported = Data(#"{"class_embed_type": "timestep"}"#.utf8)
        #expect {
            try JSONDecoder().decode(UNet2DConditionModel.Config.self, from: unsupported)
        } throws: { "\($0)".contains("class_embed_type") }
    }
}
