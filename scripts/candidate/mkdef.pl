#!/usr/bin/env perl
# The linker version script of a shared OpenSSL library, from its ordinals file
# (util/libcrypto.num, util/libssl.num): what OpenSSL's own util/mkdef.pl makes for ELF targets,
# which the openssl-src crate does not ship. scripts/build-candidate copies this in its place.
#
#   mkdef.pl --version 3.6.3 --type lib --ordinals util/libssl.num --name ssl --OS linux
#
# Each symbol goes in the node of the version that introduced it (OPENSSL_3_0_0 → OPENSSL_3.0.0),
# each node inheriting the one before, as the upstream script writes them.
use strict;
use warnings;
use Getopt::Long;

my ($version, $type, $ordinals, $name, $os) = ('', 'lib', '', '', 'linux');
GetOptions('version=s' => \$version, 'type=s' => \$type, 'ordinals=s' => \$ordinals,
           'name=s' => \$name, 'OS=s' => \$os) or die "mkdef.pl: bad arguments\n";
die "mkdef.pl: --ordinals is needed\n" unless $ordinals;
open(my $fh, '<', $ordinals) or die "mkdef.pl: $ordinals: $!\n";
my %nodes;
while (my $line = <$fh>) {
    next if $line =~ /^\s*(#|$)/;
    my ($symbol, undef, $ver, $info) = split ' ', $line;
    next unless defined $info;
    my ($exist, $platforms) = split /:/, $info;
    next unless $exist eq 'EXIST';
    # Entries for other platforms only (VMS, WIN32…) are not ELF symbols; "!VMS" means "not VMS".
    my @p = grep { $_ ne '' } split /,/, ($platforms // '');
    next if @p && !grep { /^!/ || /^(UNIX|ELF|LINUX)$/ } @p;
    (my $node = "OPENSSL_$ver") =~ s/_(\d+)_(\d+)_(\d+)$/_$1.$2.$3/;
    push @{ $nodes{$node} }, $symbol;
}
close $fh;
my @order = sort {
    my @a = $a =~ /(\d+)\.(\d+)\.(\d+)$/; my @b = $b =~ /(\d+)\.(\d+)\.(\d+)$/;
    $a[0] <=> $b[0] || $a[1] <=> $b[1] || $a[2] <=> $b[2]
} keys %nodes;
my $previous;
for my $node (@order) {
    print "$node {\n    global:\n";
    print "        $_;\n" for sort @{ $nodes{$node} };
    print "    local: *;\n" unless defined $previous;
    print defined $previous ? "} $previous;\n" : "};\n";
    $previous = $node;
}
