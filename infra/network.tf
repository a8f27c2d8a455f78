resource "aws_vpc" "cluster" {
  # checkov:skip=CKV2_AWS_11:flow logs need a log group and an IAM role and bill per GB; a class cluster that lives hours has only SSH open, from one address
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = "clusterkit-${var.cluster_name}" }
}

# The VPC's default security group, adopted with no rules: nothing that lands in it by
# mistake can talk to anything.
resource "aws_default_security_group" "closed" {
  vpc_id = aws_vpc.cluster.id

  tags = { Name = "clusterkit-${var.cluster_name}-default-closed" }
}

resource "aws_internet_gateway" "cluster" {
  vpc_id = aws_vpc.cluster.id

  tags = { Name = "clusterkit-${var.cluster_name}" }
}

resource "aws_subnet" "public" {
  vpc_id            = aws_vpc.cluster.id
  cidr_block        = var.public_subnet_cidr
  availability_zone = local.zone
  # The master asks for its public address itself; nothing else placed here gets one.
  map_public_ip_on_launch = false

  tags = { Name = "clusterkit-${var.cluster_name}-public" }

  lifecycle {
    precondition {
      condition     = contains(tolist(local.zones), coalesce(local.zone, "none"))
      error_message = "No zone of ${var.region} offers both ${var.master_instance_type} (master) and ${var.worker_instance_type} (workers)${var.availability_zone == null ? "" : " in ${var.availability_zone}"}: pick other types (aws.master_instance_type, aws.worker_instance_type) or another region."
    }
  }
}

resource "aws_subnet" "private" {
  vpc_id                  = aws_vpc.cluster.id
  cidr_block              = var.private_subnet_cidr
  availability_zone       = local.zone
  map_public_ip_on_launch = false

  tags = { Name = "clusterkit-${var.cluster_name}-private" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.cluster.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.cluster.id
  }

  tags = { Name = "clusterkit-${var.cluster_name}-public" }
}

# The private subnet reaches the internet through the master (a NAT instance): its default
# route targets the master's network interface.
resource "aws_route_table" "private" {
  vpc_id = aws_vpc.cluster.id

  route {
    cidr_block           = "0.0.0.0/0"
    network_interface_id = aws_instance.master.primary_network_interface_id
  }

  tags = { Name = "clusterkit-${var.cluster_name}-private" }
}

resource "aws_route_table_association" "public" {
  subnet_id      = aws_subnet.public.id
  route_table_id = aws_route_table.public.id
}

resource "aws_route_table_association" "private" {
  subnet_id      = aws_subnet.private.id
  route_table_id = aws_route_table.private.id
}
