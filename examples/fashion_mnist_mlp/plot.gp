# Plots the per-epoch log of fashion_mnist_mlp (or any lepton::train::fit CSV log):
#   fashion_mnist_mlp --log-csv log.csv
#   gnuplot -e "log='log.csv'; out='training.svg'" examples/fashion_mnist_mlp/plot.gp
# Columns: epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,samples_per_s,lr
if (!exists("log")) log = 'log.csv'
if (!exists("out")) out = 'training.svg'
set terminal svg size 900,400 dynamic
set output out
set datafile separator ','
set key autotitle columnhead
set multiplot layout 1,2 title 'lepton::train::fit'
set title 'loss'
set xlabel 'epoch'
plot log using 1:2 with linespoints title 'train', log using 1:4 with linespoints title 'test'
set title 'accuracy'
plot log using 1:3 with linespoints title 'train', log using 1:5 with linespoints title 'test'
unset multiplot
