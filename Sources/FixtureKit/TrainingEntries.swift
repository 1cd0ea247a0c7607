// TrainingEntries.swift (pending UNet3D)
let trainingEntries: [FixtureEntry] = []
