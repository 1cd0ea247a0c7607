// PersonaLiveEntries.swift — fixture entries (filled in as the modules land).
import Models
import NN
import Torch

let personaliveEntries: [FixtureEntry] = [
]
