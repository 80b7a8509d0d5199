"""One writer per vendor: each renders the neutral world (`sim.synth.world`) into that vendor's
dataset folder. `gladly` (export jobs, REST side, Unthread seed; `sim.synth.dataset`) and
`zendesk` (full JSON export, API state, delta; `sim.synth.zendesk_dataset`)."""
