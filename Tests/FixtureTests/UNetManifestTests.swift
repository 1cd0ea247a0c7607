// UNetManifestTests.swift — the full-size SD-1.5 image-variations UNet (and PersonaLive's reference
// UNet, which drops conv_norm_out/conv_out) built with uninitialised storage has exactly the
// state-dict keys and shapes PyTorch lists in the manifests: same order, count and parameter total.
import Foundation
import Testing
import Models
import NN
import Torch

@Suite struct UNetManifestTests {
    struct Manifest {
        let json: [String: Any]
        let entries: [(key: String, shape: [Int])]

        init(_ file: String, listKey: String) throws {
            let url = TestPaths.fixtures.appendingPathComponent("manifests/\(file)")
            json = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
            let list = try #require(json[listKey] as? [[Any]], "\(file) has no \(listKey) list")
            entries = try list.map { row in
                (try #require(row[0] as? String), try #require(row[1] as? [Int]))
            }
        }

        /// A JSON object inside the manifest, decoded as a UNet config.
        func config(_ key: String) throws -> UNet2DConditionModel.Config {
            let obj = try #require(json[key])
            return try JSONDecoder().decode(UNet2DConditionModel.Config.self,
                                            from: JSONSerialization.data(withJSONObject: obj))
        }
    }

    static func compare(_ model: Module, with manifest: Manifest, count: Int, total: Int) {
        let own = model.stateDict().map { (key: $0.0, shape: $0.1.shape) }
        #expect(own.count == count)
        #expect(own.reduce(0) { $0 + $1.shape.reduce(1, *) } == total)
        let ownKeys = Set(own.map(\.key)), wantKeys = Set(manifest.entries.map(\.key))
        #expect(ownKeys.subtracting(wantKeys).sorted().isEmpty, "keys the manifest lacks")
        #expect(wantKeys.subtracting(ownKeys).sorted().isEmpty, "manifest keys the model lacks")
        let wantShapes = Dictionary(uniqueKeysWithValues: manifest.entries.map { ($0.key, $0.shape) })
        let mismatched = own.filter { entry in wantShapes[entry.key].map { $0 != entry.shape } ?? false }
        #expect(mismatched.isEmpty, "shape mismatches: \(mismatched.prefix(5))")
        // PyTorch's registration order too, so files we write list keys as torch.save would.
        #expect(own.map(\.key) == manifest.entries.map(\.key))
    }

    @Test("SD-1.5 image-variations UNet matches its manifest")
    func sd15UNet() throws {
        let manifest = try Manifest("sd15_image_variations_unet.json", listKey: "state_dict")
        let config = try manifest.config("constructor_config")
        #expect(config == .sd15ImageVariations)
        // The full diffusers config (defaults spelled out) must decode to the same model.
        #expect(try manifest.config("resolved_config") == config)
        let model = try ParameterInit.uninitialized { try UNet2DConditionModel(config) }
        let count = try #require(manifest.json["num_state_dict_keys"] as? Int)
        let total = try #require(manifest.json["total_parameters"] as? Int)
        Self.compare(model, with: manifest, count: count, total: total)
        // SD-1.x quirk: attention_head_dim 8 is the head count, so head_dim is 40 / 80 / 160.
        let dims = model.transformerBlocks.map { $0.attn1.dimHead }
        #expect(dims.count == 16)
        #expect(Set(dims) == [40, 80, 160])
        #expect(model.transformerBlocks.allSatisfy { $0.attn1.heads == 8 })
    }

    @Test("PersonaLive reference UNet (no conv_norm_out / conv_out) matches its manifest")
    func referenceUNet() throws {
        let manifest = try Manifest("personalive_reference_unet.json", listKey: "keys")
        let config = try manifest.config("config")
        let model = try ParameterInit.uninitialized { try UNet2DConditionModel(config, withOutputLayers: false) }
        let count = try #require(manifest.json["num_keys"] as? Int)
        let total = try #require(manifest.json["total_param_count"] as? Int)
        Self.compare(model, with: manifest, count: count, total: total)
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
