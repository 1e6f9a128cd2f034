from collections import OrderedDict

# paropt.py --save-best: trial 11 of study beauty-xe, NDCG@10 0.038529 on valid.tsv, epoch 8 chosen by it
gru4rec_params = OrderedDict([
    ('loss', 'cross-entropy'),
    ('final_act', 'softmax'),
    ('constrained_embedding', True),
    ('adapt_params', [0.9, 0.999]),
    ('layers', [256]),
    ('batch_size', 128),
    ('learning_rate', 0.05),
    ('dropout_p_embed', 0.2),
    ('dropout_p_hidden', 0.2),
    ('momentum', 0.0),
    ('adapt', 'adagrad'),
    ('n_sample', 2048),
    ('sample_alpha', 0.5),
    ('logq', 1.0),
    ('bptt', 2),
    ('n_epochs', 8),
])
