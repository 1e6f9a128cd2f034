"""What XLA makes of a compiled JAX-backend PyTensor function, for the tests that check its
program (no copies of whole weights, the precision of the products)."""


def program_text(fn, optimized=True):
    """The program of `fn` (a pytensor.function on the JAX backend) as JAX lowers it, or as XLA
    optimizes it. Shared values are passed as stored, explicit inputs by their static shapes
    (unknown sizes as 1)."""
    import jax

    def arg(v):
        stored = fn.vm.storage_map[v][0]
        if stored is not None:
            return stored
        return jax.ShapeDtypeStruct(tuple(d or 1 for d in v.type.shape), v.type.dtype)

    lowered = fn.vm.jit_fn.lower(*map(arg, fn.maker.fgraph.inputs))
    return lowered.compile().as_text() if optimized else lowered.as_text()


def whole_copies(text, shapes):
    """The lines of an optimized program that copy a whole float32 array of one of `shapes`."""
    names = {f"f32[{','.join(map(str, s))}]" for s in shapes}
    return [line.strip() for line in text.splitlines() if " copy(" in line and any(f"= {n}" in line for n in names)]


def record_training_programs(monkeypatch):
    """A list that receives the optimized program of every training call GRU4Rec builds from now
    on (in the order the fits build them)."""
    from gru4rec import GRU4Rec
    programs = []
    build = GRU4Rec._trainer

    def kept(model, *args):
        trainer, sampler = build(model, *args)
        programs.append(program_text(trainer.fn))
        return trainer, sampler

    monkeypatch.setattr(GRU4Rec, "_trainer", kept)
    return programs
