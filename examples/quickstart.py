import jax

import metaplastic as mp

task = mp.tasks.make("pca", n_in=10, n_steps=1000, scale_range=[0.5, 2.0])
net = mp.Network(sizes=(10, 1))  # one linear neuron; weights are drawn afresh per task
rule = mp.rules.make("polynomial", eta=0.01)  # 27 terms pre^a post^b w^c, a,b,c <= 2
objective = mp.Objective(task, net, rule, tasks_per_step=8, l1=1e-3)
outer = mp.MetaGradient(steps=400, lr=1e-2, schedule="cosine", clip=1.0)
result = outer.run(objective, rule.init(jax.random.key(0)), key=jax.random.key(1))
print(rule.formula(result.theta))  # close to Oja's: +pre*post -post^2*w
